"""GUI tests: a modal dialog that nobody answers fails its test instead of hanging the whole run."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox

from ich_viewer.gui import workers

# Tests that answer a dialog do so within a second or two (a timer of their own); offscreen, nobody else will.
DIALOG_PATIENCE_S = 20.0


class DialogWatch:
    """Closes a modal dialog that stays up longer than ``patience`` seconds and records what it said. Its timer
    fires inside the dialog's own event loop, so it ends an ``exec()`` that would otherwise never return."""

    def __init__(self, patience: float = DIALOG_PATIENCE_S):
        self.patience = patience
        self.stuck: list[str] = []
        self._shown, self._since = None, 0.0
        self._timer = QTimer()
        self._timer.timeout.connect(self._check)

    def start(self) -> "DialogWatch":
        self._timer.start(min(500, int(self.patience * 250)))
        return self

    def stop(self) -> None:
        self._timer.stop()

    def _check(self) -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None or dialog is not self._shown:
            self._shown, self._since = dialog, time.monotonic()
        elif time.monotonic() - self._since > self.patience:
            text = dialog.text() if isinstance(dialog, QMessageBox) else ""
            self.stuck.append(f"{type(dialog).__name__} {dialog.windowTitle()!r}" + (f": {text}" if text else ""))
            dialog.reject() if isinstance(dialog, QDialog) else dialog.close()
            self._shown = None


@pytest.fixture(scope="package", autouse=True)
def _automatic_garbage_collection_after_the_gui_tests():
    """Every window turns Python's automatic collector off for a GUI-thread timer (gui/workers.py); the tests
    after these run no event loop, so the automatic collector comes back for them."""
    yield
    workers.collect_garbage_anywhere()


@pytest.fixture(autouse=True)
def _no_dialog_left_waiting(qapp):
    """A CI run once hung for 90 minutes inside a GUI test; a message box shown with ``exec()`` and never answered
    does exactly that. Such a dialog is closed after DIALOG_PATIENCE_S and named in the test's failure."""
    watch = DialogWatch().start()
    yield watch
    watch.stop()
    if watch.stuck:
        pytest.fail(f"a modal dialog waited {DIALOG_PATIENCE_S:.0f} s for an answer and was closed: "
                    + "; ".join(watch.stuck))
