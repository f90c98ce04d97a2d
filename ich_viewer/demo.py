"""The demo study: the synthetic phantom (every subtype), written once to the user's cache folder and reused.

One folder per app version and seed (``demo-0.1.0-seed2019``). It is written beside its final name and
renamed into place when complete, so a run killed while writing never leaves a half study to be reused,
and two viewers starting at once both end up with the same complete folder.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ich_viewer import __version__
from ich_viewer.paths import user_cache_dir

DEMO_SLICES = 36  # make_phantom's default
log = logging.getLogger(__name__)


def demo_study_dir(seed: int = 2019) -> Path:
    """The demo phantom's folder in the user's cache, written on first use; where the cache cannot be written
    (a read-only or missing home on a locked-down laptop), a temporary folder removed when the program ends.
    OSError only when neither can be written."""
    try:
        return _cached_demo(seed)
    except OSError as exc:
        log.info("the demo study cannot be cached (%s); writing it to a temporary folder", exc.strerror or exc)
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    _remove_orphans()
    folder = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, True)
    write_phantom_study(make_phantom(seed=seed, n_slices=DEMO_SLICES), folder / "study")
    return folder / "study"


TEMPORARY_PREFIX = "ich-viewer-demo-"  # then the writing process's id: a later start removes it once that has ended


def _remove_orphans() -> None:
    """Temporary demo folders whose program ended without removing them (killed, or ended by a signal: atexit
    does not run then), 19 MB each."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMPORARY_PREFIX}*-*"):
        pid = folder.name[len(TEMPORARY_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive, and not ours to judge
        return True
    return True


def _cached_demo(seed: int) -> Path:
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    cache = user_cache_dir()
    final = cache / f"demo-{__version__}-seed{seed}"
    if _complete(final):
        return final
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(f"{final.name}.partial-*"):  # a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{final.name}.partial-", dir=cache))
    try:
        write_phantom_study(make_phantom(seed=seed, n_slices=DEMO_SLICES), partial / "study")
        if final.exists():  # incomplete (a file deleted by hand): replaced
            shutil.rmtree(final, ignore_errors=True)
        try:
            (partial / "study").rename(final)
        except OSError:  # another viewer renamed its copy first
            if not _complete(final):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _complete(folder: Path) -> bool:
    return (folder / "labels.csv").is_file() and len(list(folder.glob("*.dcm"))) == DEMO_SLICES
