"""``ich-viewer triage``'s arguments are checked before any inference: exit code 2 and one sentence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ich_viewer.__main__ import main
from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.paths import models_dir


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("triage-cli") / "study"
    write_phantom_study(make_phantom(seed=8, subtypes=["subdural"], n_slices=4, size=64), root)
    return root


def one_sentence(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, and no progress: nothing was classified
    assert "slices (" not in err and "Traceback" not in err
    return lines[0]


def test_help_names_the_bundled_models_presets(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["triage", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    card = IchModel.bundled(models_dir()).card
    assert len(card.presets) >= 2
    for name in card.presets:
        assert name in text
    assert f"(default: {card.default_preset})" in text


def test_an_unknown_preset_is_refused_naming_the_presets(tiny_model, study, tmp_path, capsys):
    out = tmp_path / "slices.csv"
    assert main(["triage", str(study), "--model", str(tiny_model), "--preset", "foo", "--out", str(out)]) == 2
    sentence = one_sentence(capsys.readouterr().err)
    assert "unknown preset 'foo'" in sentence and "balanced, high_sensitivity, precision_0.7" in sentence
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_an_output_in_a_missing_folder_is_refused_before_inference(tiny_model, study, tmp_path, capsys, flag):
    target = tmp_path / "no-such-folder" / "result.file"
    assert main(["triage", str(study), "--model", str(tiny_model), flag, str(target)]) == 2
    sentence = one_sentence(capsys.readouterr().err)
    assert f"the folder for {flag} does not exist ({target.parent})" in sentence
    assert not target.parent.exists()


def test_an_output_that_is_a_folder_is_refused_and_anonymised_names_no_path(tiny_model, study, tmp_path, capsys):
    assert main(["triage", str(study), "--model", str(tiny_model), "--json", str(tmp_path), "--anonymise"]) == 2
    sentence = one_sentence(capsys.readouterr().err)
    assert "--json names a folder, not a file" in sentence and str(tmp_path) not in sentence


def test_an_empty_preset_name_is_refused_not_read_as_the_default(tiny_model, study, capsys):
    assert main(["triage", str(study), "--model", str(tiny_model), "--preset", "", "--json", "/dev/null"]) == 2
    assert "unknown preset ''" in one_sentence(capsys.readouterr().err)


@pytest.mark.parametrize("target", ["an input", "a dicom file elsewhere", "the other output"])
def test_triage_never_overwrites_an_input_an_image_or_its_own_other_output(tiny_model, study, tmp_path, capsys,
                                                                          target):
    """Found by an outside tester: ``--out`` naming a DICOM file replaced it with the CSV (exit 0), and
    ``--out x --json x`` replaced the table with the summary."""
    image = sorted(study.glob("*.dcm"))[0]
    before = image.read_bytes()
    elsewhere = tmp_path / "scan.dcm"
    elsewhere.write_bytes(before)
    out = {"an input": image, "a dicom file elsewhere": elsewhere, "the other output": tmp_path / "x.out"}[target]
    args = ["triage", str(study) if target != "an input" else str(image), "--model", str(tiny_model),
            "--out", str(out), "--json", str(tmp_path / "x.out") if target == "the other output" else "/dev/null"]
    assert main(args) == 2
    sentence = one_sentence(capsys.readouterr().err)
    expected = {"an input": "--out would overwrite one of the inputs", "a dicom file elsewhere":
                "--out would overwrite a DICOM file", "the other output": "--out and --json name the same file"}
    assert expected[target] in sentence
    assert image.read_bytes() == before and elsewhere.read_bytes() == before


def test_triage_never_overwrites_a_file_in_the_folder_it_reads(tiny_model, study, tmp_path, capsys):
    """Found by an outside tester: ``--out study/labels.csv`` replaced the phantom's ground truth (a file triage
    itself had reported as "not read"), and ``--json notes.txt`` a user's notes."""
    for name in ("labels.csv", "notes.txt"):
        own = study / name
        existed = own.exists()
        before = own.read_bytes() if existed else b"the user's own notes\n"
        own.write_bytes(before)
        try:
            assert main(["triage", str(study), "--model", str(tiny_model), "--out", str(own)]) == 2
            assert "--out would overwrite a file in the folder being read" in one_sentence(capsys.readouterr().err)
            assert own.read_bytes() == before
        finally:
            if not existed:
                own.unlink()


def test_triage_never_overwrites_a_file_it_reads_through_a_link_or_beside_a_slice(tiny_model, tmp_path, capsys):
    """Found by a second outside tester: a hard link outside the folder to its notes, a symlink inside it to a file
    outside, and a slice given alone with its study's labels.csv beside it were all overwritten (exit 0)."""
    study = tmp_path / "in"
    write_phantom_study(make_phantom(seed=8, subtypes=[], n_slices=3, size=64), study)
    outside = tmp_path / "outside"
    outside.mkdir()
    (study / "notes.csv").write_text("the user's notes\n")
    os.link(study / "notes.csv", outside / "hard.csv")
    (outside / "ext.csv").write_text("linked from inside\n")
    (study / "extlink.csv").symlink_to(outside / "ext.csv")
    labels = (study / "labels.csv").read_bytes()
    cases = [([str(study)], outside / "hard.csv", "one of the files being read"),
             ([str(study)], outside / "ext.csv", "one of the files being read"),
             ([str(sorted(study.glob("ID_*.dcm"))[0])], study / "labels.csv", "a file beside an input")]
    for inputs, target, said in cases:
        before = target.read_bytes()
        assert main(["triage", *inputs, "--model", str(tiny_model), "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err and "slices (" not in err  # before any inference
        assert target.read_bytes() == before
    assert (study / "notes.csv").read_text() == "the user's notes\n" and (study / "labels.csv").read_bytes() == labels


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_a_dash_or_an_unwritable_output_is_refused_before_inference(tiny_model, study, tmp_path, capsys, flag):
    assert main(["triage", str(study), "--model", str(tiny_model), flag, "-"]) == 2
    assert "would write a file named '-'" in one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "-").exists()
    unwritable = tmp_path / "read-only"  # root writes through file modes: a folder under /sys refuses everyone
    target = Path("/sys/ich-viewer-triage.csv") if Path("/sys").is_dir() and os.geteuid() == 0 else unwritable / "x.csv"
    if target.parent == unwritable:
        unwritable.mkdir()
        unwritable.chmod(0o500)
    assert main(["triage", str(study), "--model", str(tiny_model), flag, str(target)]) == 2
    assert f"{flag} cannot be written (Permission denied)" in one_sentence(capsys.readouterr().err)
    assert not target.exists()


def test_an_output_that_is_a_dangling_link_is_written_through_and_stays_a_link(tiny_model, study, tmp_path):
    """Found by an outside tester: the up-front writability check created the link's target (an empty file)
    and removed the link, so the results went beside it and the empty file stayed."""
    folder = tmp_path / "outs"
    folder.mkdir()
    (folder / "results.csv").symlink_to(folder / "named" / "new.csv")  # its folder does not exist: unwritable
    assert main(["triage", str(study), "--model", str(tiny_model), "--out", str(folder / "results.csv")]) == 2
    assert (folder / "results.csv").is_symlink() and not (folder / "named").exists()
    (folder / "named").mkdir()
    assert main(["triage", str(study), "--model", str(tiny_model), "--out", str(folder / "results.csv")]) == 0
    assert (folder / "results.csv").is_symlink()
    assert (folder / "named" / "new.csv").read_text().startswith("path,")
    assert sorted(p.name for p in folder.iterdir()) == ["named", "results.csv"]
    (folder / "loop_a").symlink_to(folder / "loop_b")  # a third tester: a loop of links was "unexpected error"
    (folder / "loop_b").symlink_to(folder / "loop_a")
    assert main(["triage", str(study), "--model", str(tiny_model), "--out", str(folder / "loop_a")]) == 2


def test_triage_replaces_its_own_previous_output(tiny_model, study, tmp_path):
    out = tmp_path / "slices.csv"
    out.write_text("an earlier run's table\n")
    assert main(["triage", str(study), "--model", str(tiny_model), "--out", str(out)]) == 0
    assert out.read_text().startswith("path,")


def test_the_per_study_line_counts_slices_in_english(tiny_model, study, tmp_path, capsys):
    one = sorted(study.glob("*.dcm"))[0]
    assert main(["triage", str(one), "--model", str(tiny_model), "--json", str(tmp_path / "one.json")]) == 0
    assert "study 1 of 1: 1 slice, " in capsys.readouterr().err
    assert main(["triage", str(study), "--model", str(tiny_model), "--json", str(tmp_path / "four.json")]) == 0
    assert "study 1 of 1: 4 slices, " in capsys.readouterr().err


def test_triage_says_which_classes_are_never_flagged_and_that_the_model_is_for_teaching(study, tmp_path, capsys):
    """Found by an outside tester: with a model whose classes were all "not calibrated", triage printed "nothing
    flagged" and no notice; the console said nowhere that the model is not for diagnosis."""
    card = IchModel.bundled(models_dir()).card
    uncalibrated = [name for name, status in card.calibration.items() if status == "not calibrated"]
    assert uncalibrated  # the bundled card has such classes (subarachnoid, subdural)
    assert main(["triage", str(study), "--json", str(tmp_path / "s.json")]) == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("never flagged with this preset"))
    assert all(f"{name} (not calibrated" in line for name in uncalibrated)
    assert err.rstrip().endswith("Teaching and demonstration model; not for diagnosis.")


def test_a_file_name_that_is_not_utf8_is_written_escaped(tiny_model, study, tmp_path, capsys):
    """A Latin-1 name from an old CD ("Ren\\xe9e.dcm" as bytes) reaches the CSV and JSON as readable UTF-8 text,
    instead of failing the whole write."""
    import os
    import shutil

    folder = tmp_path / "cd"
    folder.mkdir()
    for i, source in enumerate(sorted(study.glob("*.dcm"))):
        name = b"Ren\xe9e.dcm" if i == 1 else source.name.encode()
        shutil.copy(source, os.fsdecode(os.path.join(os.fsencode(folder), name)))
    out, summary = tmp_path / "slices.csv", tmp_path / "summary.json"
    assert main(["triage", str(folder), "--model", str(tiny_model), "--out", str(out), "--json", str(summary)]) == 0
    assert "Ren\\xe9e.dcm" in out.read_text(encoding="utf-8") and len(out.read_text().splitlines()) == 5


def test_ctrl_c_ends_triage_even_inside_a_batch_that_never_ends(study, tmp_path):
    """Found by a third tester: with a model whose batch never ends, triage ignored Ctrl-C (Python hears a signal
    only between instructions of the main thread, which ONNX Runtime held). It now ends with one line and 130."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from ich_viewer.paths import models_dir
    from tests.core.test_model_integrity import _card, _carrier

    manifest = json.loads((models_dir() / "manifest.json").read_text())
    card = _card((models_dir() / manifest["models"][0]["file"]).read_bytes())
    (tmp_path / "slow.onnx").write_bytes(_carrier(card, slow=True))
    run = subprocess.Popen([sys.executable, "-m", "ich_viewer", "triage", str(study), "--model",
                            str(tmp_path / "slow.onnx"), "--out", str(tmp_path / "out.csv")],
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "HOME": str(tmp_path / "home")})
    time.sleep(8)  # started, scanned, and inside the first batch
    assert run.poll() is None
    run.send_signal(signal.SIGINT)
    try:
        err = run.communicate(timeout=30)[1]
    finally:
        run.kill()
    assert run.returncode == 130 and "ich-viewer triage: interrupted" in err and "Traceback" not in err, err
    assert not (tmp_path / "out.csv").exists()
