"""Reading a study in the window (issue 15): the image gets the room, docks are compact and remembered, the
skipped files are a count in the status bar, the viewport's text, markers and scale bar stay put when zoomed,
fit and 1:1 keys, keys that always move slices, and a Grad-CAM that stays in the head with its colour bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QDockWidget

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.core.windows import PRESETS, apply_sigmoid
from tests.gui.windows import new_window, opened
from tests.conftest import dicom_testfile
from tests.dicom_factory import ct_slice_from_hu

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("reading")
    write_phantom_study(make_phantom(seed=5, subtypes=["subdural", "intraparenchymal"], n_slices=6, size=128),
                        root / "study", patient_id="PAT-READ")
    for name in ("broken-1.dcm", "broken-2.dcm", "broken-3.dcm"):
        (root / "study" / name).write_bytes(b"not dicom")
    return root / "study"


@pytest.fixture
def window(qtbot, tmp_path, tiny_model):
    return new_window(qtbot, tmp_path / "settings.ini", IchModel(tiny_model), size=(1280, 800))


def dock(window, title: str) -> QDockWidget:
    return window.findChild(QDockWidget, title)


def settle(qtbot, window):
    qtbot.wait(50)  # layouts and the view's range settle on the event loop
    QApplication.processEvents()


# ---------------------------------------------------------------------- room for the image, compact docks


@pytest.mark.parametrize("size, least", [((1280, 800), 600), ((1920, 1080), 900)])
def test_the_image_gets_most_of_the_window(qtbot, tmp_path, tiny_model, study, size, least):
    window = new_window(qtbot, tmp_path / "settings.ini", IchModel(tiny_model), size)
    opened(qtbot, window, [study], classify=False)
    window.view.fit()
    settle(qtbot, window)
    view = window.view
    # Nothing under the image: the view is as tall as the window less menu, slider and status bar.
    assert view.height() >= window.height() - 110
    # A square slice fitted to the view is this many screen pixels across (it was about 440 at 1280x800).
    shown = min(view.viewbox.width(), view.viewbox.height())
    assert shown >= least and abs(1 / view.viewbox.viewPixelSize()[0] * 128 - shown) < 0.03 * shown
    # The right docks are narrow and the thresholds dock holds its sliders, not empty space.
    thresholds = dock(window, "Thresholds")
    assert window.dockWidgetArea(thresholds) == window.dockWidgetArea(dock(window, "Probabilities")) \
        == Qt.DockWidgetArea.RightDockWidgetArea
    assert thresholds.width() <= 380
    panel = window.threshold_panel
    assert panel.height() <= panel.sizeHint().height() + 40


def test_dock_layout_is_remembered(qtbot, tmp_path, tiny_model):
    settings = tmp_path / "layout.ini"
    first = new_window(qtbot, settings, IchModel(tiny_model), size=(1280, 800))
    first.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock(first, "Probabilities"))
    dock(first, "Thresholds").hide()
    first.close()
    again = new_window(qtbot, settings, IchModel(tiny_model), size=(1280, 800))
    assert again.dockWidgetArea(dock(again, "Probabilities")) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert not dock(again, "Thresholds").isVisible() and dock(again, "Browser and classes").isVisible()


def test_a_layout_saved_by_an_older_version_is_not_restored(qtbot, tmp_path, tiny_model):
    settings = QSettings(str(tmp_path / "old.ini"), QSettings.Format.IniFormat)
    old = new_window(qtbot, tmp_path / "scratch.ini", IchModel(tiny_model), size=(1280, 800))
    dock(old, "Thresholds").hide()
    settings.setValue("window/state", old.saveState(1))  # the plot was under the image then
    settings.sync()
    again = new_window(qtbot, tmp_path / "old.ini", IchModel(tiny_model), size=(1280, 800))
    assert dock(again, "Thresholds").isVisible()


def test_skipped_files_are_a_count_in_the_status_bar_that_opens_the_list(qtbot, window, study):
    opened(qtbot, window, [study], classify=False)
    button, skipped_dock = window.skipped_button, window.skipped_dock
    assert button.isVisible() and button.text() == "3 files skipped"
    assert not skipped_dock.isVisible()  # the list does not take room until asked for
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert skipped_dock.isVisible() and window.skipped.count() == 3
    assert window.skipped.maximumHeight() <= 3 * 30  # three lines, not a work area
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert not skipped_dock.isVisible()
    # One good file: no count at all.
    opened(qtbot, window, [sorted(study.glob("*.dcm"))[0]], classify=False)
    assert not button.isVisible()


def test_one_skipped_file_says_file_and_keeps_the_list_one_line_tall(qtbot, window, study, tmp_path):
    folder = tmp_path / "one-broken"
    folder.mkdir()
    for path in sorted(study.glob("*.dcm"))[:2]:
        if not path.name.startswith("broken"):
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.dcm").write_bytes(b"not dicom")
    opened(qtbot, window, [folder], classify=False)
    assert window.skipped_button.text() == "1 file skipped"
    qtbot.mouseClick(window.skipped_button, Qt.MouseButton.LeftButton)
    assert window.skipped.maximumHeight() < 40


# ---------------------------------------------------------------------- the viewport: text, markers, scale, zoom


def overlay_positions(view) -> dict[str, tuple[float, float]]:
    items = {"corner": view.overlays.corner, **view.overlays.markers, "scale": view.overlays.scale_text}
    return {name: (item.scenePos().x(), item.scenePos().y()) for name, item in items.items()}


def test_corner_text_markers_and_scale_bar_stay_on_the_viewport_when_zoomed(qtbot, window, study):
    opened(qtbot, window, [study], classify=False)
    view = window.view
    settle(qtbot, window)
    assert "PAT-READ" in view.corner.toPlainText()
    assert {e: m.toPlainText() for e, m in view.overlays.markers.items()} == \
        {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert all(m.isVisible() for m in view.overlays.markers.values())
    before, bar_before = overlay_positions(view), view.overlays.scale_bar_mm
    spacing = window.viewer.series.pixel_spacing[1]
    assert view.overlays.scale_bar_px == pytest.approx(bar_before / spacing / view.viewbox.viewPixelSize()[0], rel=0.01)
    assert view.overlays.scale_bar_px <= view.viewbox.width() / 5
    view.viewbox.scaleBy((0.25, 0.25))  # zoom in four times, then pan
    view.viewbox.translateBy((20, 15))
    settle(qtbot, window)
    after = overlay_positions(view)
    for name in ("corner", "left", "right", "top", "bottom"):  # the scale's label moves with the bar's length
        assert after[name] == pytest.approx(before[name], abs=0.5), name
    # The bar measures the new zoom: a shorter length for the same fifth of the view.
    assert view.overlays.scale_bar_mm < bar_before
    assert view.overlays.scale_bar_px == pytest.approx(
        view.overlays.scale_bar_mm / spacing / view.viewbox.viewPixelSize()[0], rel=0.01)
    # The text is drawn inside the viewport, at its top left, whatever part of the image is shown.
    corner = view.overlays.corner.mapRectToScene(view.overlays.corner.boundingRect())
    assert view.viewbox.sceneBoundingRect().contains(corner) and corner.left() - view.viewbox.sceneBoundingRect().left() < 10


def test_fit_and_actual_size_keys(qtbot, window, study):
    opened(qtbot, window, [study], classify=False)
    view = window.view
    view.viewbox.scaleBy((0.2, 0.2))
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)  # 1:1
    settle(qtbot, window)
    assert view.viewbox.viewPixelSize() == pytest.approx((1.0, 1.0), rel=0.01)
    assert view.window == PRESETS["brain"]  # Ctrl+1 is not the "1" window key
    qtbot.keyClick(window, Qt.Key.Key_F)  # fit: the whole 128-pixel slice, as large as the view allows
    settle(qtbot, window)
    visible = view.viewbox.viewRect()
    assert visible.contains(view.image.boundingRect()) or \
        visible.adjusted(-1, -1, 1, 1).contains(view.image.boundingRect())
    assert min(visible.width(), visible.height()) == pytest.approx(128, rel=0.03)
    assert "F" in [a.shortcut().toString() for a in window.actions.values()]
    # An outside tester, keyboard only: zoom needed Ctrl+wheel. Ctrl++ and Ctrl+- zoom around the middle.
    width, centre = view.viewbox.viewRect().width(), view.viewbox.viewRect().center()
    qtbot.keyClick(window, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert view.viewbox.viewRect().width() == pytest.approx(width / 1.25, rel=0.01)
    assert view.viewbox.viewRect().center().x() == pytest.approx(centre.x(), abs=0.5)
    qtbot.keyClick(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert view.viewbox.viewRect().width() == pytest.approx(width, rel=0.01)


def test_markers_from_a_real_file_and_none_without_an_orientation(qtbot, window, tmp_path):
    opened(qtbot, window, [Path(dicom_testfile("693_J2KR.dcm"))], classify=False)
    assert [window.view.overlays.markers[e].toPlainText() for e in ("left", "right", "top", "bottom")] == \
        ["R", "L", "A", "P"]
    assert window.view.overlays.scale_bar_mm is not None
    path = ct_slice_from_hu(np.full((64, 64), 40.0), tmp_path / "no-orientation.dcm", z=0.0, series_uid="1.2.3.4",
                            study_uid="1.2.3", instance=1)
    ds = pydicom.dcmread(path)
    del ds.ImageOrientationPatient
    ds.save_as(path)
    opened(qtbot, window, [path], classify=False)
    assert window.viewer.series.orientation is None
    assert not any(m.isVisible() for m in window.view.overlays.markers.values())


def test_no_scale_bar_where_the_file_states_no_pixel_spacing(qtbot, window, tmp_path):
    source = Path(dicom_testfile("CT_small.dcm"))
    opened(qtbot, window, [source], classify=False)
    assert window.viewer.series.pixel_spacing_known and window.view.overlays.scale_bar_mm is not None
    ds = pydicom.dcmread(source)  # the same real slice without its PixelSpacing: 1 mm would be a guess
    del ds.PixelSpacing
    ds.save_as(tmp_path / "no-spacing.dcm")
    opened(qtbot, window, [tmp_path / "no-spacing.dcm"], classify=False)
    assert not window.viewer.series.pixel_spacing_known
    assert window.view.overlays.scale_bar_mm is None
    # the corner text is redrawn with the new slice (both files hold the same patient and position)
    qtbot.waitUntil(lambda: "pixel spacing not stated: no scale" in window.view.overlays.corner.toPlainText(),
                    timeout=10000)


def on_screen_px_per_mm(view, series) -> tuple[float, float]:
    """Screen pixels per millimetre across and down, from where the image is drawn."""
    drawn = view.image.mapRectToScene(view.image.boundingRect())
    rows, columns = view.hu.shape
    return drawn.width() / (columns * series.pixel_spacing[1]), drawn.height() / (rows * series.pixel_spacing[0])


def test_non_square_pixels_are_drawn_a_millimetre_as_long_across_as_down(qtbot, window, tmp_path):
    """An outside tester: a real slice with every other row kept (rows 1.32 mm apart, columns 0.66 mm) showed
    the head squashed 2:1, and the scale bar was right only across."""
    ds = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    pixels = ds.pixel_array[::2]
    ds.Rows, ds.PixelData = pixels.shape[0], pixels.tobytes()
    ds.PixelSpacing = [2 * float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])]
    ds.save_as(tmp_path / "half-rows.dcm")
    for path in (Path(dicom_testfile("CT_small.dcm")), tmp_path / "half-rows.dcm"):
        opened(qtbot, window, [path], classify=False)
        qtbot.keyClick(window, Qt.Key.Key_F)  # fit
        settle(qtbot, window)
        across, down = on_screen_px_per_mm(window.view, window.viewer.series)
        assert across == pytest.approx(down, rel=0.01), path.name
    assert window.view.hu.shape == (64, 128)


def test_a_monochrome1_slice_is_shown_and_exported_white_for_its_lowest_value(qtbot, window, tmp_path):
    """An outside tester: a real slice marked MONOCHROME1 showed and exported air black, as MONOCHROME2 does.
    DICOM shows a MONOCHROME1 image's lowest value white after the window; HU and the model's input are the same."""
    from ich_viewer.gui.export import windowed_rgb

    ds = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.SeriesInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "monochrome1.dcm")
    shown, exported = [], []
    for path in (Path(dicom_testfile("CT_small.dcm")), tmp_path / "monochrome1.dcm"):
        opened(qtbot, window, [path], classify=False)
        # the view may still show the last series' slice (the same pixels) until this one's is drawn
        qtbot.waitUntil(lambda: (window.view.image.lut is not None) == window.viewer.series.monochrome1)
        window.view.image.render()
        image = window.view.image.qimage.convertToFormat(window.view.image.qimage.Format.Format_Grayscale8)
        shown.append(np.array([[image.pixelColor(x, y).red() for x in range(0, 128, 8)] for y in range(0, 128, 8)]))
        exported.append(windowed_rgb(window.viewer, window.viewer.loader.slice(0))[..., 0].astype(int))
    assert window.viewer.series.monochrome1
    np.testing.assert_array_equal(exported[1], 255 - exported[0])
    assert np.abs(shown[1] - (255 - shown[0])).max() <= 1
    assert shown[0][0, 0] < 30 and shown[1][0, 0] > 225  # the corner's air: black, then white


@pytest.mark.parametrize("size", [(1280, 800), (1000, 700)])
def test_the_scale_bar_is_as_long_as_its_millimetres_on_the_image_after_a_fit(qtbot, tmp_path, tiny_model, study, size):
    """An outside tester measured the bar 3-5% short after a fit against lines 50 mm apart in a phantom: it was
    placed with the zoom before the fit (pyqtgraph renews its pixel size after the range signal)."""
    window = new_window(qtbot, tmp_path / "settings.ini", IchModel(tiny_model), size)
    opened(qtbot, window, [study], classify=False)
    view = window.view
    settle(qtbot, window)  # fitted as it opened
    across, _ = on_screen_px_per_mm(view, window.viewer.series)
    assert view.overlays.scale_bar_px == pytest.approx(view.overlays.scale_bar_mm * across, rel=0.01)
    view.viewbox.scaleBy((0.5, 0.5))
    settle(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_F)  # and fitted again
    settle(qtbot, window)
    across, _ = on_screen_px_per_mm(view, window.viewer.series)
    assert view.overlays.scale_bar_px == pytest.approx(view.overlays.scale_bar_mm * across, rel=0.01)


# ---------------------------------------------------------------------- keys always move slices


def test_a_click_on_a_threshold_control_takes_no_keyboard_focus(qtbot, window, study):
    opened(qtbot, window, [study])
    panel = window.threshold_panel
    slider, box = panel.sliders["any"], panel.flag_boxes["epidural"]
    preset = panel.findChild(type(window.skipped_button), "preset_high_sensitivity")
    window.viewer.go_to(2)
    for widget in (slider, box, preset):  # each works with the mouse...
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=widget.rect().center())
        # Tab reaches it (keyboard use), a click does not: the keys stay with the slices
        assert QApplication.focusWidget() is not widget and widget.focusPolicy() == Qt.FocusPolicy.TabFocus
    assert window.viewer.thresholds.preset == "high_sensitivity" and not window.viewer.thresholds.enabled["epidural"]
    value = slider.value()
    qtbot.keyClick(window, Qt.Key.Key_Down)  # ...and the arrow keys still move the slice, not the slider
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert window.viewer.index == 4 and slider.value() == value
    wheel = QWheelEvent(QPointF(10, 10), QPointF(10, 10), QPoint(0, 0), QPoint(0, -120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(window.view.viewport(), wheel)
    assert window.viewer.index == 5
    assert window.slider.focusPolicy() == Qt.FocusPolicy.NoFocus  # the slice slider's own keys run backwards


# ---------------------------------------------------------------------- Grad-CAM and windowing


def test_grad_cam_stays_in_the_head_with_its_colour_bar(qtbot, window, study):
    opened(qtbot, window, [study])
    view, viewer = window.view, window.viewer
    for name in viewer.thresholds.values:
        viewer.set_threshold(name, 1.0)  # nothing flagged: no heat map by default, and no colour bar
    assert not view.overlay.isVisible() and not view.overlays.colour_bar.isVisible()
    window.threshold_panel.apply_preset("high_sensitivity")  # the random model flags every slice
    assert view.overlay.isVisible() and view.overlays.colour_bar.isVisible()
    c = viewer.cam_class_index()
    assert view.overlays.colour_bar.title.toPlainText().startswith(f"Grad-CAM: {CLASSES[c]}")
    shown, hu = view.overlay.image, view.hu
    assert shown.shape == hu.shape and shown.max() > 0
    outside = ~viewer.body_mask()
    assert outside.any() and (shown[outside] == 0).all()  # nothing drawn on the air around the head
    assert (shown[0, :] == 0).all() and (shown[:, 0] == 0).all()
    qtbot.keyClick(window, Qt.Key.Key_C)  # overlay off: the bar goes with it
    assert not view.overlays.colour_bar.isVisible()


def test_sigmoid_windowing_from_the_view_menu(qtbot, window, study):
    opened(qtbot, window, [study], classify=False)
    view = window.view
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    assert "Sigmoid windowing" in [a.text() for a in menu.actions()]
    qtbot.keyClick(window, Qt.Key.Key_S)
    assert window.viewer.window_function == "sigmoid" and window.actions["sigmoid"].isChecked()
    np.testing.assert_allclose(view.image.image, apply_sigmoid(view.hu, 40, 80), atol=1e-6)
    assert tuple(view.image.levels) == (0.0, 1.0) and "sigmoid" in view.corner.toPlainText()
    qtbot.keyClick(window, Qt.Key.Key_2)  # another window keeps the sigmoid
    np.testing.assert_allclose(view.image.image, apply_sigmoid(view.hu, 80, 200), atol=1e-6)
    qtbot.keyClick(window, Qt.Key.Key_S)
    np.testing.assert_array_equal(view.image.image, view.hu)
    assert tuple(view.image.levels) == (PRESETS["subdural"].low, PRESETS["subdural"].high)
