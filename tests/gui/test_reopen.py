"""Opening a study again must let the previous one go: each open used to keep one int16 copy of the
study alive (+18 MB for the demo) through finished jobs that were never released."""

from __future__ import annotations

import gc
import weakref

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QSettings

from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.gui.main_window import MainWindow
from ich_viewer.gui import workers
from ich_viewer.gui.workers import Job

pytestmark = pytest.mark.gui
OPENS = 10


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("reopen") / "study"
    write_phantom_study(make_phantom(seed=4, subtypes=["epidural"], n_slices=6, size=64), out)
    return out


def open_and_settle(qtbot, window, path, classify: bool) -> None:
    previous = window.viewer.loader
    window.open_paths([path])
    # A new loader first: the old one is finished and the load job's thread may end before its result lands.
    # The slice reaches the view on the window's next decode-progress tick, after the loader has finished.
    qtbot.waitUntil(lambda: window.viewer.loader is not previous and window.viewer.loader.finished and window.view.hu is not None
                    and (not classify or (window.viewer.prediction is not None and window.viewer.prediction.complete))
                    and not any(job.thread.isRunning() for job in window.jobs), timeout=30000)


def alive_after_flush(refs: list[weakref.ref]) -> int:
    # Released jobs go with deleteLater: deliver those events. No gc.collect(): the test runs with the
    # cyclic collector off, so a study kept only by a reference cycle counts as kept (in the app it
    # waits for a full collection, and RSS grew 15 MB an open in the soak bench until it came).
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return sum(r() is not None for r in refs)


@pytest.fixture
def no_cyclic_gc():
    workers.collect_garbage_in_the_gui_thread()  # as a window starts it: then paused, so that only
    gc.collect()  # reference counting frees anything during the test
    workers.garbage_collector.timer.stop()
    yield
    workers.garbage_collector.timer.start()


@pytest.mark.parametrize("with_model", [False, True], ids=["no model", "classified"])
def test_reopening_a_study_releases_the_previous_volume(qtbot, tmp_path, tiny_model, study, with_model, no_cyclic_gc):
    window = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                        model=IchModel(tiny_model) if with_model else None, load_bundled=False)
    qtbot.addWidget(window)
    window.show()
    loaders, results = [], []
    for _ in range(OPENS):  # weak references only: the test itself must not keep a study alive
        open_and_settle(qtbot, window, study, classify=with_model)
        loaders.append(weakref.ref(window.viewer.loader))
        results.append(weakref.ref(window.viewer.result))
    assert window.viewer.loader.finished and window.view.hu is not None  # the last study is on screen
    # Only the study on screen may hold its volume; every earlier loader (and its array) is gone.
    assert alive_after_flush(loaders[:-1]) == 0, "earlier studies' VolumeLoaders are still referenced"
    assert alive_after_flush(results[:-1]) == 0, "earlier LoadResults are still referenced"
    assert loaders[-1]() is window.viewer.loader


def test_finished_jobs_are_released(qtbot, tmp_path, tiny_model, study):
    window = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                        model=IchModel(tiny_model), load_bundled=False)
    qtbot.addWidget(window)
    open_and_settle(qtbot, window, study, classify=True)
    # Neither the load job nor the classification job outlives its thread, in the list or as a child.
    qtbot.waitUntil(lambda: not window.jobs, timeout=5000)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert window.findChildren(Job) == []


def test_a_slower_earlier_open_does_not_replace_the_latest(qtbot, tmp_path, tiny_model, study, monkeypatch):
    """Found by an outside tester: open a large folder, then another before the first is scanned, and the
    first replaced the second when its scan ended. Here the first scan is held back until the second is on
    screen (a real load, only delayed)."""
    import threading

    import ich_viewer
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    slow = tmp_path / "slow"
    write_phantom_study(make_phantom(seed=5, subtypes=["subdural"], n_slices=4, size=64), slow, patient_id="PAT-SLOW")
    release, real_load = threading.Event(), ich_viewer.load

    def load(paths, *args, **kwargs):
        if list(paths) == [slow]:
            release.wait(30)
        return real_load(paths, *args, **kwargs)

    monkeypatch.setattr(ich_viewer, "load", load)
    window = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                        model=IchModel(tiny_model), load_bundled=False)
    qtbot.addWidget(window)
    window.show()
    window.open_paths([slow])
    window.open_paths([study])
    qtbot.waitUntil(lambda: window.viewer.loader is not None and window.viewer.loader.finished
                    and window.view.hu is not None, timeout=30000)
    latest = window.viewer.series
    assert any(job.thread.isRunning() for job in window.jobs)  # the first scan is still held back
    release.set()
    qtbot.waitUntil(lambda: not any(job.thread.isRunning() for job in window.jobs), timeout=30000)
    QCoreApplication.processEvents()
    assert window.viewer.series is latest and window.viewer.result.studies[0].patient.id != "PAT-SLOW"
