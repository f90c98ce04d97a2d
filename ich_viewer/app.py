"""Start the GUI: logging, the last-resort excepthook dialog, QApplication, MainWindow."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

try:  # onnxruntime before Qt: on Windows the other order can load the wrong DLLs.
    import onnxruntime  # noqa: F401
except ImportError:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


def install_excepthook() -> None:
    """An unexpected error becomes a dialog with the message, never a silent exit or a traceback."""
    from PySide6.QtWidgets import QApplication, QMessageBox

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):  # Ctrl-C before its handler was in place: exit, no empty box
            _interrupted()
            return
        log.error("unexpected error: %s", "".join(traceback.format_exception_only(kind, value)).strip())
        log.debug("".join(traceback.format_exception(kind, value, tb)))
        if QApplication.instance() is not None:
            QMessageBox.critical(None, "ICH Viewer", f"Something went wrong: {value}\n\nNothing was changed on disk.")

    sys.excepthook = hook


def _interrupted(signum=None, frame=None) -> None:
    """Ctrl-C in the terminal: close every window as a user would (settings kept, jobs ended), then exit 130 as
    the command-line tools do. Raises nothing: a KeyboardInterrupt raised inside a Qt call showed an empty
    "Something went wrong" box that kept the program alive, or crashed it during start-up."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    def close_and_exit() -> None:
        print("\nich-viewer: interrupted", file=sys.stderr)
        QApplication.instance().setQuitOnLastWindowClosed(False)  # its later quit() would make the exit code 0
        for widget in QApplication.topLevelWidgets():
            widget.close()
        QApplication.exit(130)

    QTimer.singleShot(0, close_and_exit)  # from the event loop, never from inside whatever Qt call was running


def quit_on_interrupt(app) -> None:
    """SIGINT ends the GUI (:func:`_interrupted`). Python runs a signal handler only between bytecodes, so a timer
    lets the interpreter in while Qt idles."""
    import signal

    from PySide6.QtCore import QTimer

    signal.signal(signal.SIGINT, _interrupted)
    tick = QTimer(app)  # its parent keeps it: no reference needed here
    tick.timeout.connect(lambda: None)
    tick.start(200)


def run_gui(paths: Sequence[Path] = (), demo: bool = False, quit_after: float | None = None,
            screenshot: Path | None = None, qt_options: Sequence[str] = ()) -> int:
    """The viewer until its window closes; ``quit_after`` seconds: close it by itself then (smoke tests).

    Exit code 1, with one sentence on stderr, when Qt's platform plugin cannot start here (no display, or
    system libraries missing) instead of the abort Qt would end in."""
    from ich_viewer.platform_check import platform_problem

    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        problem = platform_problem()
        if problem:
            print(problem, file=sys.stderr)
            return 1

    from ich_viewer.core import decoder_process
    from ich_viewer.core.memory import limit_heap_retention
    from ich_viewer.gui.main_window import MainWindow
    from ich_viewer.paths import resources_dir

    limit_heap_retention()  # freed studies go back to the system: a long session does not grow
    decoder_process.prestart()  # ready before the first study is opened
    app = QApplication.instance() or QApplication([*sys.argv[:1], *qt_options])  # -style fusion and the like
    app.setApplicationName("ICH Viewer")
    app.setOrganizationName("ICH Viewer")
    icon = resources_dir() / "icons" / "ich-viewer.png"
    if icon.is_file():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    install_excepthook()
    quit_on_interrupt(app)
    window = MainWindow()
    window.show()
    from PySide6.QtCore import QTimer

    if quit_after is not None:  # first: nothing below, not even an error box left open, may keep it running

        def close() -> None:  # as a user would: settings saved, jobs ended; one line says what ran
            series = window.viewer.series
            print(f"ich-viewer: the window ran {quit_after:g} s on Qt's {app.platformName()} platform, "
                  + (f"a series of {len(series)} slices open" if series is not None else "no series open"))
            if screenshot is not None and not window.grab().save(str(screenshot), "PNG"):
                print(f"ich-viewer: could not write the screenshot {screenshot}", file=sys.stderr)
            window.close()
            app.exit(0)  # every event loop, a message box's included

        QTimer.singleShot(int(quit_after * 1000), close)
    if demo:
        from ich_viewer.demo import demo_study_dir

        try:
            paths = [demo_study_dir()]
        except OSError as exc:
            from PySide6.QtWidgets import QMessageBox

            message = (f"The demo study could not be written ({exc.strerror or exc}): neither the cache folder "
                       "nor a temporary folder can be written on this machine.")
            QTimer.singleShot(0, lambda: QMessageBox.warning(window, "ICH Viewer", message))
    if paths:
        window.open_paths(list(paths))
    code = app.exec()
    # Closing cancelled every job and waited 5 s; one still running when Python exits destroys a running QThread,
    # which aborts the process. A job that will not end (a scan inside a vast folder) is left to the exit itself.
    if not window.jobs.wait_all(30000):
        print("ich-viewer: a background job did not end; exiting without waiting for it", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)
    return code
