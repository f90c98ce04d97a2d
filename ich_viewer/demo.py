"""The demo study: the synthetic phantom (every subtype) written to a temporary folder for one session."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def demo_study_dir(seed: int = 2019) -> Path:
    """Write the demo phantom to a fresh temporary folder, removed when the program exits."""
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    out = Path(tempfile.mkdtemp(prefix="ich-viewer-demo-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)  # 19 MB a demo: never leave it behind
    write_phantom_study(make_phantom(seed=seed), out)
    return out
