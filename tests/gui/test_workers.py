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
