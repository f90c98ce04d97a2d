"""Issue 15's small defects, each through the window a user sees: recent items, tree columns, the plot,
keyboard focus after the Grad-CAM combo, and the demo study's folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QRect, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent, QFontMetrics, QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox, QSlider

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.gui.main_window import MainWindow
from tests.gui.windows import new_window, opened

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("defects")
    write_phantom_study(make_phantom(seed=3, subtypes=["subdural", "epidural"], n_slices=6, size=96), root / "study",
                        patient_id="PAT-DEFECTS")
    return root / "study"


@pytest.fixture
def window(qtbot, tmp_path, tiny_model):
    return new_window(qtbot, tmp_path / "settings.ini", IchModel(tiny_model))


def recent_items(window) -> list[str]:
    return [action.text() for action in window.recent_menu.actions()]


def test_open_recent_keeps_only_absolute_paths_that_exist(qtbot, tmp_path, study, monkeypatch):
    gone = tmp_path / "deleted-study"
    gone.mkdir()
    settings = QSettings(str(tmp_path / "recent.ini"), QSettings.Format.IniFormat)
    settings.setValue("recent", [str(gone), "relative/study", str(study)])
    settings.sync()
    gone.rmdir()
    window = new_window(qtbot, tmp_path / "recent.ini")
    assert recent_items(window) == [str(study)]  # dropped when read
    # A relative path is remembered as the absolute path it meant; a missing one is not remembered at all.
    monkeypatch.chdir(study.parent)
    opened(qtbot, window, [Path(study.name)], classify=False)
    assert window.settings.value("recent") == [str(study)] and recent_items(window) == [str(study)]
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warnings.append(text))
    window.open_paths([gone])
    qtbot.waitUntil(lambda: bool(warnings), timeout=10000)
    assert recent_items(window) == [str(study)] and window.settings.value("recent") == [str(study)]


def test_several_dropped_files_are_one_recent_item_that_reopens_them_all(qtbot, window, study, tmp_path):
    three = sorted(study.glob("*.dcm"))[:3]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in three])
    window.dropEvent(QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: window.viewer.series is not None and window.viewer.loader.finished, timeout=20000)
    assert len(window.viewer.series) == 3
    assert recent_items(window) == [f"{three[0]} (+2 more)"]
    opened(qtbot, window, [study], classify=False)  # another open, then the dropped item from the menu
    assert recent_items(window) == [str(study), f"{three[0]} (+2 more)"]
    window.recent_menu.actions()[1].trigger()
    qtbot.waitUntil(lambda: window.viewer.series is not None and len(window.viewer.series) == 3
                    and window.viewer.loader.finished, timeout=20000)
    assert recent_items(window) == [f"{three[0]} (+2 more)", str(study)]  # reopened: first again, not doubled
    # A deleted file leaves the rest of its item; the settings survive a restart.
    three[2].rename(tmp_path / "moved.dcm")
    try:
        window.settings.sync()
        restarted = new_window(qtbot, Path(window.settings.fileName()))
        assert recent_items(restarted) == [f"{three[0]} (+1 more)", str(study)]
    finally:
        (tmp_path / "moved.dcm").rename(three[2])


def test_series_tree_shows_every_column_whole_at_the_default_size(qtbot, tmp_path, study, tiny_model):
    # the longest a series row can say once classified: every class flagged (thresholds at 0)
    window = new_window(qtbot, tmp_path / "settings.ini", IchModel(tiny_model))
    window.resize(1280, 800)
    opened(qtbot, window, [study])
    for name in CLASSES:
        window.viewer.set_class_enabled(name, True)  # the tiny model's card may mark some not calibrated
        window.viewer.set_threshold(name, 0.0)
    assert window.browser.topLevelItem(0).child(0).text(0).endswith("flagged: any, EDH, IPH, IVH, SAH, SDH")
    assert window.size().width() == 1280 and window.size().height() == 800
    tree = window.browser
    assert tree.header().length() <= tree.viewport().width()  # no column pushed out of sight
    metrics = tree.fontMetrics()
    items = [tree.topLevelItem(0), *(tree.topLevelItem(0).child(i) for i in range(tree.topLevelItem(0).childCount()))]
    assert len(items) == 2 and "Phantom seed 3" in items[1].text(0)
    for item in items:
        for column in range(tree.columnCount()):
            text, cell = item.text(column), tree.visualItemRect(item)
            width = tree.visualRect(tree.indexFromItem(item, column)).width()
            if not text:
                continue
            longest_word = max(metrics.horizontalAdvance(word) for word in text.split())
            wrapped = metrics.boundingRect(QRect(0, 0, width - 6, 10_000), Qt.TextFlag.TextWordWrap, text)
            assert longest_word <= width - 6, (text, width)
            assert wrapped.height() <= cell.height(), (text, wrapped.height(), cell.height())


def test_plot_legend_is_beside_the_curves_and_axes_are_sane_for_zero_and_one_slice(qtbot, window, study):
    plot = window.plot
    axis = plot.getAxis("bottom")
    # Nothing open: a slice axis at 1, not "slice (x0.001)" from -400 to 400.
    assert axis.range == [0.5, 1.5] and axis.autoSIPrefixScale == 1 and "x0" not in axis.labelString()
    opened(qtbot, window, [sorted(study.glob("*.dcm"))[0]])
    assert len(window.viewer.series) == 1
    assert axis.range == [0.5, 1.5] and axis.autoSIPrefixScale == 1
    ticks = [value for _spacing, values in axis.tickValues(*axis.range, axis.width()) for value in values]
    assert ticks == [1.0]  # one slice, one tick (numbered from 1, as in the window): no 0.2 steps
    assert plot.curves["any"].opts["symbol"] == "o"  # its probabilities show as dots, a line needs two slices
    opened(qtbot, window, [study])
    ticks = [value for _spacing, values in axis.tickValues(*axis.range, axis.width()) for value in values]
    assert axis.range == [0.5, 6.5] and ticks and all(value == int(value) and 1 <= value <= 6 for value in ticks)
    legend, curves = plot.legend.sceneBoundingRect(), plot.plotItem.vb.sceneBoundingRect()
    assert legend.left() >= curves.right() - 1  # beside the curves (their rectangles share at most an edge)
    assert plot.rect().contains(plot.mapFromScene(legend).boundingRect())  # all six names on screen
    assert len(plot.legend.items) == 6
    # Each colour beside its own name (found by an outside tester: in a tall plot every row stretched, the name
    # at its top and the swatch at its bottom, nearer the next class's name).
    for sample, label in plot.legend.items:
        row = label.sceneBoundingRect()
        assert row.height() < 2.5 * QFontMetrics(QApplication.font()).height(), label.text
        assert row.top() <= sample.sceneBoundingRect().center().y() <= row.bottom(), label.text


def test_after_the_cam_combo_arrow_keys_and_wheel_move_slices(qtbot, window, study):
    opened(qtbot, window, [study], classify=False)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    window.view.setFocus()
    combo = window.cam_controls.cam_class
    qtbot.mouseClick(combo, Qt.MouseButton.LeftButton)  # opens the list, as a click does
    qtbot.waitUntil(lambda: combo.view().isVisible())
    qtbot.keyClick(combo.view(), Qt.Key.Key_Down)
    qtbot.keyClick(combo.view(), Qt.Key.Key_Return)  # chooses "any"
    qtbot.waitUntil(lambda: not combo.view().isVisible())
    assert combo.currentText() == "any" and window.viewer.cam_class == "any"
    assert QApplication.focusWidget() is window.view
    start = window.viewer.index
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down)  # where a real key press goes
    assert window.viewer.index == start + 1 and combo.currentText() == "any"
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Up)
    assert window.viewer.index == start
    wheel = QWheelEvent(QPointF(10, 10), QPointF(10, 10), QPoint(0, 0), QPoint(0, -120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(window.view.viewport(), wheel)
    assert window.viewer.index == start + 1 and combo.currentText() == "any"


def test_letters_typed_into_a_drop_down_pick_its_entry_and_set_off_no_shortcut(qtbot, window, study):
    """An outside tester, keyboard only: with the anonymised display on, Tab to the Grad-CAM class drop-down and
    type "a" for "any". The "A" shortcut ran instead and showed the patient's name; "s" switched sigmoid
    windowing, "m" the model view. A letter in a focused drop-down now picks its entry, as in any Qt drop-down."""
    opened(qtbot, window, [study], classify=False)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    window.actions["anonymise"].trigger()
    assert window.viewer.anonymised
    combo, colours = window.cam_controls.cam_class, window.cam_controls.cam_map
    combo.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(combo.hasFocus)
    qtbot.keyClicks(combo, "a")
    assert window.viewer.anonymised and window.actions["anonymise"].isChecked()  # still anonymised
    assert combo.currentText() == "any"
    qtbot.wait(QApplication.keyboardInputInterval() + 100)  # a new search, not "as"
    qtbot.keyClicks(combo, "s")
    assert combo.currentText() == "subarachnoid" and not window.actions["sigmoid"].isChecked()
    colours.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(colours.hasFocus)
    qtbot.keyClicks(colours, "m")
    assert colours.currentText() == "magma" and not window.viewer.composite  # not the model view
    qtbot.keyClick(colours, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)  # a shortcut with Ctrl still runs
    qtbot.waitUntil(lambda: not window.isVisible())


def test_the_demo_is_written_once_to_the_cache_and_reused(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    window = new_window(qtbot, tmp_path / "demo.ini")
    folders = []
    for _ in range(2):
        before = window.viewer.series
        window.actions["Open demo study"].trigger()
        qtbot.waitUntil(lambda: window.viewer.series is not before and window.viewer.loader.finished, timeout=60000)
        folders.append(Path(window.viewer.series.files[0]).parent)
        if len(folders) == 1:
            written = (folders[0] / "labels.csv").stat().st_mtime_ns
    assert folders[0] == folders[1] and folders[0].parent == tmp_path / "cache" / "ich-viewer"
    assert (folders[0] / "labels.csv").stat().st_mtime_ns == written  # reused, not written again
    assert list((tmp_path / "cache" / "ich-viewer").iterdir()) == [folders[0]]
    assert not any((tmp_path / "tmp").iterdir())  # no temporary folder left behind


def test_the_wheel_over_a_threshold_slider_or_combo_moves_slices_not_the_control(qtbot, window, study):
    opened(qtbot, window, [study], classify=False)
    slider = window.threshold_panel.sliders["subdural"]
    combo = window.cam_controls.cam_class
    before = (slider.value(), window.viewer.thresholds.values["subdural"], combo.currentIndex())
    start = window.viewer.index
    for widget, delta, expected in ((slider, -120, start + 1), (combo, -120, start + 2), (window.slider, 120, start + 1)):
        centre = QPointF(widget.rect().center())
        wheel = QWheelEvent(centre, widget.mapToGlobal(centre), QPoint(0, 0), QPoint(0, delta),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                            False)
        QApplication.sendEvent(widget, wheel)
        assert window.viewer.index == expected, widget  # as over the image: away from the user is the next slice
    assert (slider.value(), window.viewer.thresholds.values["subdural"], combo.currentIndex()) == before


def test_a_small_window_narrows_the_docks_not_the_image_to_a_strip(qtbot, tmp_path, tiny_model, study):
    """Found by an outside tester: at 700 x 500 the docks left the image about 70 px wide."""
    from ich_viewer.gui.main_window import MIN_IMAGE_PX

    window = new_window(qtbot, tmp_path / "small.ini", IchModel(tiny_model), size=(700, 500))
    opened(qtbot, window, [study])
    QApplication.processEvents()
    view = window.view
    assert view.width() >= MIN_IMAGE_PX and view.height() >= MIN_IMAGE_PX
    # A corner line longer than the view wraps inside it instead of losing its last words past the edge.
    viewport, corner = view.viewbox.sceneBoundingRect(), view.overlays.corner
    assert "PAT-DEFECTS" in corner.toPlainText() and viewport.contains(corner.mapRectToScene(corner.boundingRect()))
    long_line = "MAXIMILIANA-KONSTANTINOPOULOU^ALEXANDRA-FRIEDERIKE  ID PAT-DEFECTS-0123456789  20260101"
    view.overlays.set_corner_text(long_line + "\n" + corner.toPlainText().splitlines()[-1])
    assert corner.boundingRect().width() > 0 and viewport.contains(corner.mapRectToScene(corner.boundingRect()))
    assert corner.toPlainText().startswith(long_line)  # wrapped, not shortened
    # The Grad-CAM's colour bar takes a quarter of a short view, not 140 px of its 500.
    window.threshold_panel.apply_preset("high_sensitivity")
    bar = view.overlays.colour_bar
    assert bar.isVisible() and bar.bar.rect().height() <= 0.25 * viewport.height() + 1
    assert viewport.contains(bar.title.mapRectToScene(bar.title.boundingRect()))


def test_the_window_fits_a_small_laptop_screen_and_its_docks_scroll(qtbot, tmp_path, tiny_model, study):
    """An outside tester: the first window was 1280 x 800 whatever the screen, and the window could not be made
    shorter than 519 px, more than a 1366 x 768 laptop at 150% offers (about 470 px under a title bar and a
    panel): the status bar with the teaching notice, and the presets' explanation, were off the screen for good.
    The first size fits the screen, and the side panel and the thresholds scroll instead of setting the height."""
    from PySide6.QtWidgets import QScrollArea

    window = MainWindow(settings=QSettings(str(tmp_path / "first.ini"), QSettings.Format.IniFormat),
                        model=IchModel(tiny_model))
    qtbot.addWidget(window)
    screen = window.screen().availableGeometry()
    assert window.width() <= screen.width() and window.height() <= screen.height()  # offscreen: 800 x 800
    assert window.minimumSizeHint().width() <= 911 and window.minimumSizeHint().height() <= 470
    window.resize(911, 470)
    window.show()
    opened(qtbot, window, [study])
    QApplication.processEvents()
    assert window.height() == 470 and window.statusBar().isVisible()
    assert window.view.width() >= 300 and window.view.height() >= 300
    panel = window.threshold_panel
    scroll = next(area for area in window.findChildren(QScrollArea) if area.widget() is panel)
    assert scroll.verticalScrollBar().maximum() > 0  # the rest is a scroll away
    scroll.ensureWidgetVisible(panel.preset_label)  # the preset's rule, at the bottom
    assert scroll.verticalScrollBar().value() > 0
    assert panel.width() >= panel.minimumSizeHint().width()  # scrolled down, never squeezed across
    # A second tester: narrower still (1280 x 800 at 150% is 853 px), the dock cut the values and a preset off
    # with no way to them. The window can be narrower than the panels, which then scroll sideways.
    window.resize(760, 460)
    qtbot.waitUntil(lambda: window.width() == 760)
    QApplication.processEvents()
    assert scroll.horizontalScrollBar().isVisible() and scroll.horizontalScrollBar().maximum() > 0
    assert panel.width() >= panel.minimumSizeHint().width() and window.view.width() >= 280
    from ich_viewer.gui.dialogs import ShortcutsDialog, resize_within_screen

    dialog = ShortcutsDialog(window)  # the dialogs likewise: a model card had its Close button below the screen
    resize_within_screen(dialog, 5000, 3000)
    assert (dialog.width(), dialog.height()) == (screen.width(), screen.height())


def test_a_screen_reader_names_the_parts_and_reads_thresholds_and_slices_as_shown(qtbot, window, study):
    """An outside tester: the threshold sliders had no name and read as positions 0-4000 (2260 for 0.768), the
    slice slider as 0-based, and the image, tree, table and plot had no name. The read-outs' grey was 3.4:1."""
    opened(qtbot, window, [study])
    for widget in (window.view, window.slider, window.browser, window.classes, window.plot):
        assert widget.accessibleName(), type(widget).__name__
    window.viewer.go_to(2)
    assert window.slider.accessibleDescription() == f"slice 3 of {len(window.viewer.series)}"
    panel = window.threshold_panel
    for name, slider in panel.sliders.items():
        assert slider.accessibleName() == f"{name} threshold"
        assert slider.accessibleDescription().startswith(f"threshold {panel.values[name].text()}; ")
    window.viewer.set_threshold("any", 0.5)
    assert panel.sliders["any"].accessibleDescription().startswith("threshold 0.500; ")

    def luminance(colour) -> float:
        channels = [c / 255 for c in colour.getRgb()[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    readout = panel.readouts["any"]
    text, back = readout.palette().color(readout.foregroundRole()), readout.palette().color(readout.backgroundRole())
    lighter, darker = sorted((luminance(text), luminance(back)), reverse=True)
    assert (lighter + 0.05) / (darker + 0.05) >= 4.5  # WCAG's contrast for small text


def test_tab_reaches_the_presets_before_the_sliders_as_they_are_laid_out(qtbot, window, study):
    """An outside tester: the preset buttons sit at the top of the thresholds but came last in Tab order, after
    all twelve flag boxes and sliders (the buttons are made when a model is set, after the sliders)."""
    from PySide6.QtWidgets import QPushButton

    opened(qtbot, window, [study], classify=False)
    panel = window.threshold_panel
    buttons = [b for b in panel.findChildren(QPushButton) if b.objectName().startswith("preset_")]
    order, widget = [], window  # the chain from its start, as Tab walks it from the window's first control
    while len(order) < len(buttons) + 2 * len(CLASSES):
        widget = widget.nextInFocusChain()
        assert widget is not window, order  # round the whole chain without finding them all
        if widget.focusPolicy() & Qt.FocusPolicy.TabFocus and panel.isAncestorOf(widget):
            order.append(widget.objectName())
    first = sorted(buttons, key=lambda b: b.x())
    assert order[:len(buttons)] == [b.objectName() for b in first]  # left to right
    assert order[len(buttons):len(buttons) + 2] == ["flag_any", "threshold_any"]
    assert order[-1] == "threshold_subdural"
    high = next(b for b in buttons if b.objectName() == "preset_high_sensitivity")
    high.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.keyClick(high, Qt.Key.Key_Return)  # Enter presses a focused preset, as Space does
    assert window.viewer.thresholds.preset == "high_sensitivity"


def test_the_image_and_the_plot_show_when_they_have_the_keys(qtbot, window, study):
    """An outside tester, keyboard only: the image and the plot take focus (arrows move slices there) but showed
    nothing when they had it. Each draws a highlight border round its ViewBox while focused, taking no room."""
    opened(qtbot, window, [study], classify=False)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    highlight = window.palette().color(window.palette().ColorRole.Highlight)
    view_box, plot_box = window.view.viewbox, window.plot.plotItem.vb
    before = view_box.sceneBoundingRect()

    def framed(box) -> bool:
        return box.border.style() != Qt.PenStyle.NoPen and box.border.color() == highlight

    window.view.setFocus()
    qtbot.waitUntil(lambda: framed(view_box))
    assert not framed(plot_box) and view_box.sceneBoundingRect() == before
    window.plot.setFocus()
    qtbot.waitUntil(lambda: framed(plot_box))
    assert not framed(view_box)


def test_a_model_cards_name_is_shown_as_text_not_markup(qtbot, tmp_path):
    """Found by an outside tester: a card named '<b>...' or '<img src=file:...>' was rendered as rich text in
    the status bar."""
    from tests.model_cards import bundled_with_card

    model = IchModel(bundled_with_card(tmp_path / "markup.onnx", name="<b>bold</b><img src='file:///etc/x.png'>"))
    window = new_window(qtbot, tmp_path / "markup.ini", model)
    assert window.model_label.textFormat() == Qt.TextFormat.PlainText
    assert window.model_label.text().startswith("model: <b>bold</b><img")


def test_without_a_mouse_tab_reaches_a_threshold_slider_and_escape_returns_to_the_slices(qtbot, window, study):
    """Found by an outside tester: every control but the image and the plot refused focus, so a threshold
    could not be changed without a mouse. Tab now reaches them (a click still leaves the keys with the slices)."""
    opened(qtbot, window, [study], classify=False)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    window.view.setFocus()
    slider = window.threshold_panel.findChild(QSlider, "threshold_any")
    for _ in range(40):  # Tab through the window until the "any" slider has the focus
        if QApplication.focusWidget() is slider:
            break
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is slider
    before, index = window.viewer.thresholds.values["any"], window.viewer.index
    qtbot.keyClick(slider, Qt.Key.Key_Right)  # the arrow moves the threshold, not the slice
    assert window.viewer.thresholds.values["any"] > before and window.viewer.index == index
    qtbot.keyClick(slider, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is window.view
    qtbot.keyClick(window.view, Qt.Key.Key_Down)
    assert window.viewer.index == index + 1


def test_without_a_mouse_tab_reaches_the_class_table_and_enter_goes_to_a_class_worst_slice(qtbot, window, study):
    """Left from an earlier outside round: the class table took no focus, so its "go to the worst slice" needed
    a mouse. Tab reaches it; arrows pick a class and Enter goes there; a click still leaves the keys alone."""
    opened(qtbot, window, [study])
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    window.view.setFocus()
    table = window.classes
    for _ in range(40):
        if QApplication.focusWidget() is table:
            break
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is table
    table.setCurrentCell(0, 0)
    qtbot.keyClick(table, Qt.Key.Key_Down)  # "epidural"
    assert table.currentRow() == 1
    window.viewer.go_to(0)
    qtbot.keyClick(table, Qt.Key.Key_Return)
    assert window.viewer.index == window.viewer.worst_slice("epidural") != 0
    qtbot.keyClick(table, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is window.view
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=table.visualItemRect(table.item(2, 0)).center())
    assert QApplication.focusWidget() is not table
    assert window.viewer.index == window.viewer.worst_slice("intraparenchymal")


def test_a_narrow_thresholds_dock_wraps_its_read_outs_instead_of_cutting_them(qtbot, tmp_path):
    """Found by an outside tester: in a dock narrowed to about 290 px, "NOT CALIBRATED, not flagged (P 0.02 R 0.44
    Sp 0.86)" was cut at "Sp": the dock gave the panel its unwrapped height."""
    from PySide6.QtWidgets import QDockWidget

    from ich_viewer.paths import models_dir

    window = new_window(qtbot, tmp_path / "s.ini", IchModel.bundled(models_dir()), size=(1280, 800))
    panel = window.threshold_panel
    dock = next(d for d in window.findChildren(QDockWidget) if d.isAncestorOf(panel))
    for width in (340, 290, 260):
        window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        qtbot.wait(100)  # the dock's resize, then the panel's taller minimum and the layout it causes
        for label in panel.readouts.values():
            assert label.height() >= label.heightForWidth(label.width()), (width, label.text())
    assert any(label.heightForWidth(label.width()) > label.fontMetrics().height() * 1.5
               for label in panel.readouts.values())  # at the narrowest, some read-out does take two lines
    # ... and breaks between the pairs, never inside one: it had ended a line with "Sp" and begun the next "0.86)".
    for label in panel.readouts.values():
        lines = wrapped_lines(label.text(), label.font(), label.contentsRect().width())
        assert not any(line.rstrip().endswith((" P", " R", " Sp", "(P")) for line in lines), lines


def wrapped_lines(text: str, font, width: int) -> list[str]:
    """The lines Qt's text layout breaks ``text`` into at ``width`` pixels, as a word-wrapped label does."""
    from PySide6.QtGui import QTextLayout

    layout = QTextLayout(text, font)
    layout.beginLayout()
    lines = []
    while (line := layout.createLine()).isValid():
        line.setLineWidth(width)
        lines.append(text[line.textStart():line.textStart() + line.textLength()])
    layout.endLayout()
    return lines


def test_a_preset_with_long_reasons_does_not_widen_the_dock_or_shrink_the_image(qtbot, tmp_path):
    """Found by an outside tester: the "precision 0.7" preset's "not flagged: never reaches precision 0.70" lines
    widened the thresholds dock, so the image shrank and its scale bar jumped from 50 to 20 mm."""
    from ich_viewer.paths import models_dir

    window = new_window(qtbot, tmp_path / "s.ini", IchModel.bundled(models_dir()), size=(1280, 800))
    panel = window.threshold_panel
    assert any(panel.thresholds.card.presets)
    panel.apply_preset("balanced")
    QApplication.processEvents()
    before = (window.view.width(), panel.width())
    panel.apply_preset("precision_0.7")
    QApplication.processEvents()
    assert any(label.text().startswith("not flagged: never reaches") for label in panel.readouts.values())
    assert (window.view.width(), panel.width()) == before


def test_closing_the_window_stops_a_model_run_that_never_ends(qtbot, tmp_path, study):
    """Found by a third tester: with a model whose batch never ended, Model > Cancel classification did nothing,
    and closing the window destroyed the still running thread: "QThread: Destroyed while thread is still running",
    then the process aborted. Cancelling now stops ONNX Runtime in the middle of the batch."""
    import json

    from ich_viewer.paths import models_dir
    from tests.core.test_model_integrity import _card, _carrier

    manifest = json.loads((models_dir() / "manifest.json").read_text())
    card = _card((models_dir() / manifest["models"][0]["file"]).read_bytes())
    (tmp_path / "slow.onnx").write_bytes(_carrier(card, slow=True))
    window = new_window(qtbot, tmp_path / "s.ini", IchModel(tmp_path / "slow.onnx"))
    window.open_paths([study])
    qtbot.waitUntil(lambda: window.classify is not None, timeout=60000)
    job = window.classify
    qtbot.wait(500)
    assert job.thread.isRunning()  # the first batch is still counting
    window.cancel_classification()
    qtbot.waitUntil(lambda: not job.thread.isRunning(), timeout=10000)
    assert window.viewer.prediction is None or not window.viewer.prediction.done.any()
    window.open_series(window.viewer.study, window.viewer.series)  # classify again, then close mid-batch
    qtbot.waitUntil(lambda: window.classify is not None and window.classify.thread.isRunning(), timeout=10000)
    job = window.classify
    window.close()
    assert not job.thread.isRunning()


def test_a_model_refused_by_its_outputs_gives_way_to_the_previous_one(qtbot, tmp_path, study, monkeypatch):
    """Found by a third tester: after a model was refused mid-run (its outputs broke the contract), the series
    list kept the previous model's "flagged: any, IPH, IVH", the status bar said "Classifying..." for good, and
    the refused model stayed in use, so every run brought the same message back."""
    import json

    from ich_viewer.gui import main_window
    from ich_viewer.paths import models_dir
    from tests.core.test_model_integrity import _card, _carrier

    shown = []
    monkeypatch.setattr(main_window.QMessageBox, "warning", lambda parent, title, text: shown.append(text))
    bundled = IchModel.bundled(models_dir())
    window = new_window(qtbot, tmp_path / "s.ini", bundled)
    opened(qtbot, window, [study])
    assert "flagged" in window.browser.series_item(window.viewer.series).text(0)
    manifest = json.loads((models_dir() / "manifest.json").read_text())
    card = _card((models_dir() / manifest["models"][0]["file"]).read_bytes())
    (tmp_path / "five.onnx").write_bytes(_carrier(card, classes=5, probabilities_shape=("N", None), open_shapes=True))
    assert window.open_model(tmp_path / "five.onnx")  # loads: its shapes are left open until it runs
    qtbot.waitUntil(lambda: bool(shown), timeout=60000)
    assert "gave probabilities" in shown[0] and f"{card['name']} {card['version']}, is back" in shown[0]
    assert window.viewer.model is bundled
    qtbot.waitUntil(lambda: window.classify is None and window.viewer.prediction is not None
                    and window.viewer.prediction.complete, timeout=60000)
    assert "flagged" in window.browser.series_item(window.viewer.series).text(0)  # the bundled model's own run
    assert not window.statusBar().currentMessage().startswith("Classifying")


def test_a_window_closed_while_its_study_opens_opens_nothing_and_leaves_no_thread(qtbot, tmp_path, tiny_model, study):
    """Found by an outside tester: a window closed mid-scan opened the series when the scan ended and started a
    classification in the closed window; dropping such windows one after another piled up threads until Qt
    aborted the process ("QThread: Destroyed while thread is still running")."""
    window = new_window(qtbot, tmp_path / "s.ini", IchModel(tiny_model))
    window.open_paths([study])
    window.close()
    qtbot.waitUntil(lambda: not any(job.running for job in window.jobs), timeout=10000)
    qtbot.wait(200)  # the scan's queued result, had it been taken
    assert window.viewer.series is None and window.classify is None
    window.show()  # shown again, it works again
    opened(qtbot, window, [study])
    assert window.viewer.prediction.complete


def test_a_cancelled_scan_stops_instead_of_reading_every_header(qtbot, study):
    from ich_viewer.gui.workers import load_job

    job, outcome = load_job([study]), []
    job.finished.connect(lambda result: outcome.append("finished"))
    job.failed.connect(outcome.append)
    job.cancel()
    job.start()
    qtbot.waitUntil(lambda: bool(outcome), timeout=10000)
    assert outcome[0] != "finished" and "Cancelled" in outcome[0]
    job.wait()
