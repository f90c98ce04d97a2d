"""The console entry point's headless sub-commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom

from ich_viewer.__main__ import main


def test_phantom_writes_a_study_that_info_reads(tmp_path, capsys):
    out = tmp_path / "phantom"
    assert main(["phantom", str(out), "--seed", "7", "--subtypes", "epidural,subdural", "--slices", "6", "--size", "128"]) == 0
    assert "wrote 6 slices" in capsys.readouterr().out
    files = sorted(out.glob("ID_*.dcm"))
    assert len(files) == 6 and (out / "labels.csv").exists()
    assert "epidural" in pydicom.dcmread(files[0]).SeriesDescription
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 slices 128x128" in printed and "skipped" in printed and "labels.csv: not a DICOM file" in printed


def test_bad_arguments_give_a_message_and_exit_2(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "x"), "--subtypes", "stroke"]) == 2
    assert "unknown subtype" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 2
    assert "No CT images found" in capsys.readouterr().err


def test_console_script_help_lists_subcommands():
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--demo" in run.stdout and "phantom" in run.stdout


def test_the_demo_study_is_removed_when_the_program_exits():
    code = "from ich_viewer.demo import demo_study_dir; d = demo_study_dir(); print(d, len(list(d.glob('*.dcm'))))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    folder, n_files = run.stdout.split()
    assert int(n_files) > 0  # it was really written...
    assert not Path(folder).exists()  # ...and is gone after exit
