"""Every background thread of the GUI starts here. Signals carry results or a message, never a traceback."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal
from pyqtgraph.util.garbage_collector import GarbageCollector

import ich_viewer
from ich_viewer.core.errors import IchViewerError
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import Cancellation, Cancelled

log = logging.getLogger(__name__)

#: Python's cycle collector, run on a GUI-thread timer (None until a window starts it).
garbage_collector: GarbageCollector | None = None


def collect_garbage_in_the_gui_thread() -> None:
    """Python's automatic collector runs in whichever thread happens to allocate when it is due. Freeing a Qt
    widget's wrapper there destroys the widget off the GUI thread: a load worker freeing a closed window's menus
    deadlocked with the GUI thread (each held a lock the other needed, a Qt mutex and the GIL) and hung a CI run.
    pyqtgraph's GarbageCollector turns the automatic collector off and collects on a timer in the GUI thread."""
    global garbage_collector
    if garbage_collector is None:
        garbage_collector = GarbageCollector(interval=1.0)


def collect_garbage_anywhere() -> None:
    """The automatic collector back, for code that runs on without an event loop to fire the timer (tests)."""
    global garbage_collector
    if garbage_collector is not None:
        garbage_collector.timer.stop()
        garbage_collector = None
    gc.enable()


class _Worker(QObject):
    failed = Signal(str)
    finished = Signal(object)

    def __init__(self, function):
        super().__init__()
        self.function = function

    def run(self) -> None:
        # Drop the function as it runs: its closure holds the job's inputs (a classification's loader
        # holds a whole study), which must not live as long as the Job object does.
        function, self.function = self.function, None
        self.error = None  # what ended the run, for the GUI thread after ``failed`` (a refused model is restored)
        try:
            self.finished.emit(function())
        except IchViewerError as exc:
            self.error = exc
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown as a message; details only in the debug log
            log.debug("background job failed", exc_info=True)
            self.failed.emit(f"Something went wrong: {type(exc).__name__}: {exc}")


class Job(QObject):
    """``function(job)`` run on its own QThread; ``finished(result)`` or ``failed(message)`` on the GUI
    thread. The function gets the job for its ``cancel_event`` and ``batch`` signal. ``ended`` comes
    after either, once the thread has stopped: the owner can then drop the job (``deleteLater``)."""

    finished = Signal(object)
    failed = Signal(str)
    batch = Signal(object)  # classification: a BatchResult
    ended = Signal()

    def __init__(self, function, parent=None):
        super().__init__(parent)
        self.cancel_event = Cancellation()  # also stops a model run in progress
        self.thread = QThread()
        self.worker = _Worker(lambda: function(self))
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.finished.connect(self.finished)
        self.worker.failed.connect(self.failed)
        # quit() from the worker's own thread (it is thread-safe): a queued quit would wait for the GUI
        # thread, which may itself be blocked in wait() (closing during a classification hung 15 s).
        self.worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.worker.failed.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        # Queued to the job's own (GUI) thread, so it arrives after finished/failed.
        self.thread.finished.connect(self._on_thread_finished)

    def start(self) -> "Job":
        self.thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        """False once the function returned; the job is dropped soon after (``Jobs``)."""
        try:
            return self.thread.isRunning()
        except RuntimeError:  # the C++ side is already deleted
            return False

    def wait(self, ms: int = 10000) -> bool:
        return self.thread.wait(ms)

    def _on_thread_finished(self) -> None:
        # QThread.finished is sent just before the thread stops: wait out its last instructions, so
        # whoever drops the job on ``ended`` never destroys a running QThread (that aborts).
        self.thread.wait()
        self.ended.emit()


class Jobs:
    """The window's running jobs. Each is dropped (``deleteLater``) once its thread has stopped: kept, each
    one stayed a child of the window for good, with its QThread, and a classification also held its study's
    volume (+18 MB a demo open)."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []

    def start(self, job: Job) -> Job:
        job.ended.connect(self._release_ended)
        self._jobs.append(job.start())
        return job

    def _release_ended(self) -> None:
        for job in [j for j in self._jobs if j.thread.isFinished()]:
            self._jobs.remove(job)
            job.deleteLater()

    def __iter__(self):
        return iter(list(self._jobs))

    def __len__(self) -> int:
        return len(self._jobs)

    def wait_all(self, ms: int) -> bool:
        """Wait up to ``ms`` for each job; True when none is running any more."""
        for job in list(self._jobs):
            job.wait(ms)
        return not any(job.running for job in self._jobs)


def load_job(paths: list[Path], parent=None) -> Job:
    """The header scan of an open. Cancelling stops it at the next file (it fails with :class:`Cancelled`, which
    its owner, having moved on, ignores): closing the window mid-scan must not leave a thread running at exit."""

    def scan(job: Job):
        def stop_if_cancelled(done: int, total: int) -> None:
            if job.cancel_event.is_set():
                raise Cancelled()

        return ich_viewer.load(paths, progress=stop_if_cancelled)

    return Job(scan, parent)


def classify_job(model, loader, n_slices: int, parent=None, slabs=None) -> Job:
    return Job(lambda job: predict_series(model, loader, n_slices, cancel=job.cancel_event, slabs=slabs,
                                          on_batch=job.batch.emit), parent)


def calibrate_job(paths: list[Path], model, max_flag_rate: float, name: str, parent=None) -> Job:
    """A site preset from normal studies (core/calibration.py): finished((SitePreset, series left out))."""
    from ich_viewer.core.calibration import calibrate

    return Job(lambda job: calibrate(paths, model, max_flag_rate, name, cancel=job.cancel_event), parent)
