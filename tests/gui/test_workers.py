"""Background jobs: a cancelled job's thread ends even while the GUI thread is blocked waiting for it, and a
finished job signals `ended` with its thread stopped and its inputs let go."""

from __future__ import annotations

import weakref

import pytest

from ich_viewer.gui.workers import Job

pytestmark = pytest.mark.gui


def test_waiting_on_a_cancelled_job_does_not_need_the_event_loop(qtbot):
    def until_cancelled(job):
        job.cancel_event.wait(30)
        return "cancelled"

    job = Job(until_cancelled).start()
    qtbot.waitUntil(job.thread.isRunning)
    job.cancel()
    # The GUI thread blocks here without processing events, as closeEvent does. A quit() queued to
    # the GUI thread would never arrive and wait() would run out its timeout and return False.
    assert job.wait(5000)
    assert job.thread.isFinished()


def test_a_failing_job_reports_a_message_and_its_thread_ends(qtbot):
    def broken(job):
        raise ValueError("bad slice")

    job = Job(broken)
    with qtbot.waitSignal(job.failed, timeout=5000) as failed:
        job.start()
    assert failed.args == ["Something went wrong: ValueError: bad slice"]
    assert job.wait(5000)


def test_ended_follows_the_result_with_the_thread_stopped_and_the_inputs_dropped(qtbot):
    class Volume:  # stands in for a loader: the closure's input that must not outlive the run
        pass

    volume = Volume()
    alive = weakref.ref(volume)
    job = Job(lambda job, v=volume: "done")
    del volume
    order = []
    job.finished.connect(lambda result: order.append(result))
    job.ended.connect(lambda: order.append(("ended", job.thread.isFinished())))
    with qtbot.waitSignal(job.ended, timeout=5000):
        job.start()
    # The owner may delete the job (and its QThread) on ``ended``: the thread must really have stopped.
    assert order == ["done", ("ended", True)]
    assert alive() is None  # a finished job no longer holds what its function was given


def test_a_message_box_nobody_answers_is_closed_and_named_instead_of_hanging(qtbot):
    """The GUI tests' dialog watch (tests/gui/conftest.py): a warning shown with exec() from a slot, as the window
    shows its errors, returns once the watch gives up on it, and the watch says what it said."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox

    from tests.gui.conftest import DialogWatch

    watch, answered = DialogWatch(patience=0.5).start(), []
    QTimer.singleShot(0, lambda: answered.append(QMessageBox.warning(None, "ICH Viewer", "The open failed: nothing")))
    qtbot.waitUntil(lambda: bool(answered), timeout=10000)
    watch.stop()
    assert watch.stuck == ["QMessageBox 'ICH Viewer': The open failed: nothing"]


def test_qt_objects_freed_by_the_cycle_collector_are_destroyed_in_the_gui_thread(qtbot, tmp_path):
    """A CI run hung: a load worker's allocation set off Python's automatic collector, which freed a closed
    window's menus in that thread while the GUI thread was destroying a widget: each waited for a lock the other
    held (a Qt mutex, the GIL). With a window open, cycles are collected on the GUI thread's timer only."""
    import gc
    import threading

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMainWindow

    from tests.gui.windows import new_window

    new_window(qtbot, tmp_path / "s.ini")
    assert not gc.isenabled()
    gc.collect()  # from zero: the worker's allocations, not this thread's, reach the collector's threshold first
    destroyed_in: list[tuple[str, str]] = []
    # A closed window kept only by a reference cycle, with a menu, as in the hung run. A Python subclass, like the
    # app's: shiboken defers a plain QWidget's deletion to the GUI thread, but not a subclass's.
    closed = type("ClosedWindow", (QMainWindow,), {})()
    closed.cycle = closed
    menu = closed.menuBar().addMenu("File")
    for name, item in (("window", closed), ("menu", menu), ("action", menu.addAction("Open..."))):
        item.destroyed.connect(lambda *_, name=name: destroyed_in.append((name, threading.current_thread().name)),
                               Qt.ConnectionType.DirectConnection)
    del closed, menu, item
    # Thousands of new containers, kept, in a worker: the automatic collector, if on, would run in this thread.
    kept: list[list] = []
    worker = threading.Thread(target=lambda: kept.extend([] for _ in range(100_000)), name="worker")
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: len(destroyed_in) == 3, timeout=10000)
    assert sorted(destroyed_in) == [("action", "MainThread"), ("menu", "MainThread"), ("window", "MainThread")]
