"""Offline by construction: the viewer's model and triage open no socket and write nothing but their outputs.

Run in a fresh interpreter with an empty HOME and TMPDIR, and an audit hook (PEP 578) that refuses and
records every socket and every file opened for writing. ONNX Runtime's telemetry is native code, out of
the hook's sight; it shows as the device identifier and event database it writes under
``~/.cache/Microsoft`` when ``ORT_DISABLE_TELEMETRY`` is not set before it loads, so the empty HOME is
checked too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ich_viewer.core.phantom import make_phantom, write_phantom_study
from tests import dicom_factory as make

# Installed before anything else runs (sitecustomize), in the process and in every Python process it
# starts (the decoder processes): refuses sockets and records writes, each reported on stderr at once
# (a process killed at the end would never reach an atexit report).
GUARD = r'''
import json, os, sys
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def report(*event):
    sys.stderr.write("\nGUARD-EVENT " + json.dumps([*event, os.getpid()]) + "\n")
    sys.stderr.flush()

def hook(event, args):
    if event.startswith("socket.") and event != "socket.sethostname":
        report("socket", event, repr(args)[:200])
        raise OSError("network access refused by the offline test")
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in str(mode) for c in "wax+") or flags & WRITE:
            report("write", os.path.realpath(os.fsdecode(args[0])))

report("start")
sys.addaudithook(hook)
'''


def _events(stderr: str) -> list[list]:
    return [json.loads(line.split(" ", 1)[1]) for line in stderr.splitlines() if line.startswith("GUARD-EVENT ")]

RUN = r'''
import sys
from pathlib import Path
from ich_viewer import triage
from ich_viewer.core.model import IchModel
from ich_viewer.paths import models_dir
import numpy as np

study, out = Path(sys.argv[1]), Path(sys.argv[2])
model = IchModel.bundled(models_dir())
assert model.run(np.full((2, 64, 64), -1000, np.float32)).probabilities.shape == (2, 6)
sys.exit(triage.run([study], out=out / "slices.csv", json_path=out / "studies.json", anonymise=True))
'''


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_model_and_triage_open_no_socket_and_write_only_their_outputs(tmp_path):
    study = tmp_path / "study"
    write_phantom_study(make_phantom(seed=1, n_slices=6, size=128), study)
    make.copy(make.dicom_testfile("693_J2KR.dcm"), study / "jpeg2000.dcm")  # decoded in a decoder process
    guard, home, temp, out = (tmp_path / name for name in ("guard", "home", "tmp", "out"))
    for folder in (guard, home, temp, out):
        folder.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_", "PYTHON"))}
    # No bytecode caches: they belong to the installation, not to what a run writes.
    env.update(HOME=str(home), TMPDIR=str(temp), PYTHONPATH=f"{guard}{os.pathsep}{repo}", PYTHONDONTWRITEBYTECODE="1")
    before = _files_under(study)

    run = subprocess.run([sys.executable, "-c", RUN, str(study), str(out)], env=env, cwd=out,
                         capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stderr[-2000:]
    events = _events(run.stderr)
    assert len({e[-1] for e in events if e[0] == "start"}) >= 2, "the decoder process ran unguarded"
    assert [e for e in events if e[0] == "socket"] == []
    written = sorted({e[1] for e in events if e[0] == "write"})
    assert written == [str((out / "slices.csv").resolve()), str((out / "studies.json").resolve())]
    assert _files_under(home) == [], "something wrote into HOME (ONNX Runtime's telemetry writes ~/.cache/Microsoft)"
    assert _files_under(temp) == []
    assert _files_under(out) == ["slices.csv", "studies.json"]
    assert _files_under(study) == before


def test_the_socket_guard_would_see_a_connection(tmp_path):
    """The audit hook above is what the first test relies on: it must catch a real attempt."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept OSError:\n    pass\n"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(guard)},
                         capture_output=True, text=True, timeout=60)
    assert any(e[0] == "socket" for e in _events(run.stderr))
