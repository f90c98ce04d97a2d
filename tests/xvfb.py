"""A fresh Xvfb server for the tests that run a real window on Qt's xcb platform."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def xvfb_display(size: str = "1280x800x24") -> Iterator[str]:
    """Its display name (":N"); Xvfb picks a free number and writes it to a pipe (-displayfd). Skips, with the
    package to install, when Xvfb is missing."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (Debian/Ubuntu: apt-get install xvfb; the README's set-up installs it)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(write_end), "-screen", "0", size, "-nolisten", "tcp"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.fail(f"Xvfb did not start: {server.stderr.read().decode(errors='replace')[-500:]}")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)
