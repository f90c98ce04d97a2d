"""``ich-viewer --selftest`` from the source install (the frozen one is tests/test_packaging.py's): every step
passes on a sound installation, and a damaged model makes it fail, say which step, and exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_selftest(tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmp_path),
           "RUST_BACKTRACE": "0"}
    command = [sys.executable, "-m", "ich_viewer", "--selftest"] if code is None else [sys.executable, "-c", code]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_selftest_passes_every_step_offline_with_an_empty_home(tmp_path):
    done = run_selftest(tmp_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("selftest: ")]
    steps = [line.split(": ")[1] for line in lines]
    assert done.returncode == 0, done.stdout + done.stderr
    assert steps == ["socket guard", "phantom study", "load", "model", "inference", "decoders", "decode jpeg-lossless",
                     "decode jpeg-2000", "decode jpeg-ls", "decode rle", "render", "network", "passed"]
    assert all(": ok (" in line for line in lines[:-1])
    assert "SHA-256" in lines[3] and "verified" in lines[3]
    decoders = lines[5]
    for plugin in ("gdcm", "pylibjpeg", "pyjpegls", "pillow", "imagecodecs"):
        assert plugin in decoders, plugin
    assert list((tmp_path / "home").rglob("*")) == []  # nothing written to the user's home
    assert [p.name for p in tmp_path.iterdir()] == ["home"]  # and its temporary folder removed


DAMAGED = r'''
import shutil, sys, tempfile
from pathlib import Path
import ich_viewer.selftest as selftest
from ich_viewer.paths import models_dir

damaged = Path(tempfile.mkdtemp())
shutil.copytree(models_dir(), damaged, dirs_exist_ok=True)
model = next(damaged.glob("*.onnx"))
model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))  # one bit flipped
selftest.models_dir = lambda: damaged
code = selftest.run()
shutil.rmtree(damaged)
sys.exit(code)
'''


def test_a_damaged_model_fails_the_selftest_and_names_the_step(tmp_path):
    done = run_selftest(tmp_path, DAMAGED)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    model = next(line for line in lines if line.startswith("selftest: model: "))
    assert model.startswith("selftest: model: FAILED") and "checksum does not match" in model
    assert "selftest: render: FAILED (no model to classify with)" in lines
    assert "selftest: decode rle: ok" in done.stdout  # the other steps still ran
    assert "selftest: inference: FAILED (StepFailed: no model or no study to classify)" in lines
    assert lines[-1] == "selftest: 3 step(s) failed"


@pytest.mark.parametrize("flag", ["--help"])
def test_the_gui_help_names_the_selftest(flag, capsys):
    from ich_viewer.__main__ import main

    with pytest.raises(SystemExit):
        main([flag])
    assert "--selftest" in capsys.readouterr().out
