"""The console entry point's headless sub-commands."""

from __future__ import annotations

import os
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
    assert "6 slices 128x128" in printed and "1 other file (CSV/TXT) not read" in printed
    assert "skipped" not in printed  # its labels.csv is beside the study, not a broken image
    assert main(["info", str(files[0])]) == 0  # one slice: "1 slice", and no distance between slices
    assert "1 slice 128x128, spacing -/1.88/1.88 mm" in capsys.readouterr().out


def test_bad_arguments_give_a_message_and_exit_2(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "x"), "--subtypes", "stroke"]) == 2
    assert "unknown subtype" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 2
    assert "No CT images found" in capsys.readouterr().err
    for command in ("info", "triage", "calibrate"):  # a path that is not there is named as such
        assert main([command, str(tmp_path / "nonexistent")]) == 2
        assert capsys.readouterr().err == f"ich-viewer: no such file or folder: {tmp_path / 'nonexistent'}\n"


def test_info_anonymised_numbers_what_it_would_name(tmp_path, capsys):
    """Found by an outside tester: `info` printed each skipped file's path, and has UIDs and dates besides."""
    out = tmp_path / "DOE_JOHN"
    assert main(["phantom", str(out), "--seed", "7", "--slices", "3", "--size", "64"]) == 0
    (out / "DOE_JOHN_broken.dcm").write_bytes(b"not dicom")
    header = pydicom.dcmread(sorted(out.glob("ID_*.dcm"))[0], stop_before_pixels=True)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    named = capsys.readouterr().out
    assert header.StudyInstanceUID in named and "DOE_JOHN_broken.dcm" in named  # for the user who asked
    assert main(["info", str(out), "--anonymise"]) == 0
    printed = capsys.readouterr().out
    for private in ("DOE", header.StudyInstanceUID, header.SeriesInstanceUID, header.StudyDate):
        assert private not in printed, private
    assert "study 1  " in printed and "  series 1.1: 3 slices" in printed and "skipped file 1 of 5: " in printed


def test_console_script_help_lists_subcommands():
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--demo" in run.stdout and "phantom" in run.stdout


def test_the_demo_study_is_written_once_to_the_cache_and_reused(tmp_path):
    """Killing the viewer used to leave a 19 MB temporary folder behind each time: now there is one, kept."""
    code = "from ich_viewer.demo import demo_study_dir; d = demo_study_dir(); print(d, len(list(d.glob('*.dcm'))))"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
            for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    (first, n_files), (second, _) = (r.stdout.split() for r in runs)
    assert first == second and int(n_files) == 36
    assert Path(first).parent == tmp_path / "cache" / "ich-viewer" and Path(first).name.startswith("demo-0.1.0-")
    assert sorted(p.name for p in Path(first).parent.iterdir()) == [Path(first).name]  # no partial copy left
    assert not any((tmp_path / "tmp").iterdir())  # nothing in the temporary folder
