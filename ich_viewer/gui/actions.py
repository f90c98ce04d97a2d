"""Every menu action and keyboard shortcut, in one table that builds the menus and the shortcut help.

A window preset has its own key here (not its place in the preset table), so adding a preset cannot
take another action's key; a test checks that no two actions share one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: Each window preset's key (core/windows.py's PRESETS); "7" is the window stored in the file.
WINDOW_KEYS = {"brain": "1", "subdural": "2", "blood": "3", "bone": "4", "stroke": "5", "soft tissue": "6"}


@dataclass(frozen=True)
class Action:
    menu: str
    text: str  # "-" is a separator; a text ending in "..." opens a dialog
    run: Callable | None = None  # run(window); None for a separator or a slot the window fills in (see PLACES)
    shortcut: str = ""
    help: str = ""  # the shortcut help's description (default: the text)
    checkable: bool = False
    name: str = ""  # the window keeps the QAction as self.actions[name]


def _window(name: str) -> Action:
    return Action("View", f"Window: {name}", lambda w: w.set_window_preset(name), WINDOW_KEYS[name],
                  f"{name} window", name=f"window {name}")


ACTIONS = (
    Action("File", "Open folder...", lambda w: w.ask_open_folder(), "Ctrl+O", "open a study folder"),
    Action("File", "Open file(s)...", lambda w: w.ask_open_files(), "Ctrl+Shift+O", "open DICOM files, a zip or a DICOMDIR"),
    Action("File", "Open recent", name="recent"),  # a submenu the window fills
    Action("File", "-"),
    Action("File", "Export slice as PNG...", lambda w: w.ask_export_png(), "Ctrl+E",
           "export the slice at its own resolution, with overlay, probabilities, model and disclaimer"),
    Action("File", "Export study summary (PDF)...", lambda w: w.ask_export_summary(), "Ctrl+Shift+E",
           "export a one-page study summary (PDF)"),
    Action("File", "Export this series' results (CSV + JSON)...", lambda w: w.ask_export_results()),
    Action("File", "-"),
    Action("File", "Quit", lambda w: w.close(), "Ctrl+Q"),
    *(_window(name) for name in WINDOW_KEYS),
    Action("View", "Window: stored in the file", lambda w: w.set_file_window(), "7", "the window stored in the file"),
    Action("View", "Model view (three-window composite)", lambda w: w.viewer.show_model_view(), "M",
           "model view: the model's three windows as colours"),
    Action("View", "Sigmoid windowing", lambda w: w.viewer.set_window_function(
        "sigmoid" if w.actions["sigmoid"].isChecked() else "linear"), "S",
        "sigmoid windowing on/off (the window's edges fade instead of clipping)", checkable=True, name="sigmoid"),
    Action("View", "Fit to window", lambda w: w.view.fit(), "F", "fit the image to the window"),
    Action("View", "Actual size (1:1)", lambda w: w.view.actual_size(), "Ctrl+1",
           "actual size: one image pixel per screen pixel"),
    Action("View", "Zoom in", lambda w: w.view.zoom(1.25), "Ctrl++", "zoom in, around the middle of the view"),
    Action("View", "Zoom out", lambda w: w.view.zoom(0.8), "Ctrl+-", "zoom out"),
    Action("View", "-"),
    Action("View", "Anonymised display", lambda w: w.viewer.set_anonymised(w.actions["anonymise"].isChecked()), "A",
           "anonymised display on/off", checkable=True, name="anonymise"),
    Action("View", "Grad-CAM overlay", lambda w: w.viewer.set_cam(enabled=w.actions["cam"].isChecked()), "C",
           "Grad-CAM overlay on/off", checkable=True, name="cam"),
    Action("View", "Next flagged run", lambda w: w.next_flagged(+1), "N", "start of the next run of flagged slices"),
    Action("View", "Previous flagged run", lambda w: w.next_flagged(-1), "Shift+N", "start of the previous run of flagged slices"),
    Action("View", "Skipped files", name="skipped"),  # the dock's own toggle
    Action("Model", "Classify this series", lambda w: w.run_classification(), "Ctrl+R", "classify the series again"),
    Action("Model", "Cancel classification", lambda w: w.cancel_classification()),
    Action("Model", "Flag series outside the intended use",
           lambda w: w.viewer.set_flag_outside_use(w.actions["outside use"].isChecked()), checkable=True,
           name="outside use"),
    Action("Model", "Calibrate to this site...", lambda w: w.ask_calibrate(),
           help="thresholds from studies known to be normal from your scanners"),
    Action("Model", "Open model...", lambda w: w.ask_open_model()),
    Action("Model", "Model card...", lambda w: w.show_model_card()),
    Action("Help", "Open demo study", lambda w: w.open_demo()),
    Action("Help", "Keyboard shortcuts", lambda w: w.show_shortcuts(), "F1", "this list"),
    Action("Help", "About ICH Viewer", lambda w: w.show_about()),
)

#: Keys and gestures that are not menu actions (the slice view and the window handle them).
OTHER_KEYS = (
    ("Wheel, Up/Down, PageUp/PageDown", "previous / next slice (PageUp/PageDown: 10 slices)"),
    ("Home / End", "first / last slice"),
    ("Right-drag", "adjust level (up/down) and width (left/right)"),
    ("Left-drag / Ctrl+wheel", "pan / zoom (the text, markers and scale bar stay on the viewport)"),
    ("Tab / Escape", "without a mouse: to the series list, the class table (Enter: that class's worst slice), the "
                     "Grad-CAM controls, the threshold sliders and presets in turn (arrows then move that control) / "
                     "back to the slices"),
)


def shortcut_rows() -> list[tuple[str, str]]:
    """(keys, what they do) for the shortcut help, from the same table as the menus."""
    return [*OTHER_KEYS, *((a.shortcut, a.help or a.text) for a in ACTIONS if a.shortcut)]


def build_menus(window) -> dict:
    """The window's menus and shortcuts from :data:`ACTIONS`; returns its QActions by name."""
    from PySide6.QtGui import QAction, QKeySequence

    actions, menus = {}, {}
    for spec in ACTIONS:
        menu = menus.get(spec.menu) or menus.setdefault(spec.menu, window.menuBar().addMenu(f"&{spec.menu}"))
        if spec.text == "-":
            menu.addSeparator()
        elif spec.name == "recent":
            window.recent_menu = menu.addMenu(spec.text)
        elif spec.name == "skipped":
            menu.addAction(window.skipped_dock.toggleViewAction())
        else:
            action = QAction(spec.text, window, checkable=spec.checkable)
            action.setShortcut(QKeySequence(spec.shortcut))
            action.triggered.connect(lambda _=False, run=spec.run: run(window))
            menu.addAction(action)
            window.addAction(action)
            actions[spec.name or spec.text] = action
    return actions
