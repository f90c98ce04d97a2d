"""Background jobs: a cancelled job's thread ends even while the GUI thread is blocked waiting for it."""

from __future__ import annotations

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
