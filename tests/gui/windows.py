"""A fresh main window for GUI tests (its own settings file, no bundled model unless given) and opening
paths in it the way a user does, waiting until the slice is drawn and, if asked, classified."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from ich_viewer.gui.main_window import MainWindow


def new_window(qtbot, settings_file: Path, model=None, size: tuple[int, int] | None = None) -> MainWindow:
    window = MainWindow(settings=QSettings(str(settings_file), QSettings.Format.IniFormat), model=model,
                        load_bundled=False)
    qtbot.addWidget(window)
    if size is not None:
        window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    return window


def opened(qtbot, window, paths, classify=True):
    before = window.viewer.series
    window.open_paths(list(paths))
    try:  # a minute: a shared CI machine once took the 20 s this allowed before (cause unknown)
        qtbot.waitUntil(lambda: window.viewer.series is not before and window.viewer.loader.finished
                        and window.view.hu is not None, timeout=60000)
    except qtbot.TimeoutError as exc:  # say which step never came, so a rare failure can be told apart
        raise AssertionError(f"the open did not show a slice within 60 s: {open_state(window, before)}") from exc
    if classify:
        qtbot.waitUntil(lambda: window.viewer.prediction is not None and window.viewer.prediction.complete
                        and window.classify is None, timeout=30000)
    return window


def open_state(window, before) -> dict:
    loader, job = window.viewer.loader, window.load_job
    return {"scan running": job is not None and job.running, "series replaced": window.viewer.series is not before,
            "slices decoded": None if loader is None else f"{loader.done} of {len(loader.ready)}",
            "decode errors": None if loader is None else dict(loader.errors), "slice drawn": window.view.hu is not None,
            "status bar": window.statusBar().currentMessage()}
