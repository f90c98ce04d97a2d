"""The real window on Qt's xcb (X11) platform under Xvfb, as a user's first run starts it.

Every other GUI test runs offscreen, which needs none of the system libraries the xcb plugin links: a
machine lacking one (libxcb-cursor0, libxcb-icccm4...) passed them all while ``ich-viewer --demo``
aborted there. This test fails on such a machine; it skips only when Xvfb itself is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.xvfb import xvfb_display as xvfb_display_server

pytestmark = pytest.mark.gui


@pytest.fixture
def xvfb_display():
    with xvfb_display_server() as display:
        yield display


def test_demo_window_runs_on_xcb_and_exits_cleanly(xvfb_display, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env.update(QT_QPA_PLATFORM="xcb", DISPLAY=xvfb_display, XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "--demo", "--quit-after", "8"], env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"exit code {run.returncode}; stderr: {run.stderr[-2000:]}"
    assert "on Qt's xcb platform, a series of 36 slices open" in run.stdout, run.stdout + run.stderr
