"""``ich-viewer triage`` end to end: real loader, real ONNX Runtime, files checked row by row."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

import ich_viewer
from ich_viewer.__main__ import main
from ich_viewer.core.model import IchModel
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.core.volume import read_volume


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    """One phantom study, a second series of another study, and a file that is not DICOM."""
    root = tmp_path_factory.mktemp("triage")
    write_phantom_study(make_phantom(seed=4, subtypes=["subdural"], n_slices=8, size=64), root / "a",
                        patient_id="PAT-A")
    write_phantom_study(make_phantom(seed=5, subtypes=[], n_slices=6, size=64), root / "b", patient_id="PAT-B")
    (root / "notes.txt").write_text("not an image")
    return root


def test_triage_writes_one_row_per_slice_and_a_study_summary(tiny_model, study_folder, tmp_path, capsys):
    out, summary = tmp_path / "slices.csv", tmp_path / "studies.json"
    code = main(["triage", str(study_folder), "--model", str(tiny_model), "--out", str(out), "--json", str(summary)])
    assert code == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 14 and list(rows[0])[:7] == ["path", "patient", "study_uid", "series_uid",
                                                     "sop_instance_uid", "slice_index", "z"]
    model = IchModel(tiny_model)
    loaded = ich_viewer.load(study_folder)
    for study in loaded.studies:
        for series in study.series:
            expected = model.run(read_volume(series)[:, None]).probabilities
            mine = [r for r in rows if r["series_uid"] == series.uid]
            assert [int(r["slice_index"]) for r in mine] == list(range(1, len(series) + 1))  # as the window counts
            assert [r["path"] for r in mine] == series.files
            assert {r["patient"] for r in mine} == {study.patient.id}
            for r, p in zip(mine, expected):
                got = np.array([float(r[f"p_{c}"]) for c in CLASSES])
                assert np.allclose(got, p, atol=1e-5)
                assert [int(r[f"flag_{c}"]) for c in CLASSES] == (p >= 0.5).astype(int).tolist()
    report = json.loads(summary.read_text())
    assert report["preset"] == "balanced" and len(report["studies"]) == 2
    # notes.txt and the two phantom label files (labels.csv) are beside the studies: counted, not skipped
    assert report["skipped"] == [] and report["other_files"] == 3
    assert report["model"]["sha256"] == model.sha256
    assert all(s["slabs"] is None for study in report["studies"] for s in study["series"])  # the card states no thickness
    # one numbering (from 1, as the window's "slice 3 of 8"): the JSON's worst slice and runs name CSV rows
    for study in report["studies"]:
        for entry in study["series"]:
            mine = {int(r["slice_index"]): r for r in rows if r["series_uid"] == entry["series_uid"]}
            for c in CLASSES:
                column = {i: float(r[f"p_{c}"]) for i, r in mine.items()}
                assert entry["classes"][c]["top_slice"] == max(column, key=column.get)
                flagged = [i for i, r in mine.items() if r[f"flag_{c}"] == "1"]
                assert [i for a, b in entry["classes"][c]["flagged_ranges"] for i in range(a, b + 1)] == flagged
    err = capsys.readouterr().err
    assert "14/14 slices" in err and "3 other files (CSV/TXT) not read" in err and "PAT-A" not in err
    assert "skipped" not in err


def test_anonymised_triage_leaves_out_names_ids_and_paths(tiny_model, study_folder, tmp_path):
    out, summary = tmp_path / "s.csv", tmp_path / "s.json"
    assert main(["triage", str(study_folder), "--model", str(tiny_model), "--out", str(out), "--json", str(summary),
                 "--anonymise", "--preset", "high_sensitivity"]) == 0
    text = out.read_text() + summary.read_text()
    assert "PAT-A" not in text and "PHANTOM^ICH" not in text and str(study_folder) not in text
    assert json.loads(summary.read_text())["thresholds"]["any"] == 0.2


def test_exit_codes(tiny_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["triage", str(tmp_path / "empty"), "--model", str(tiny_model)]) == 2
    assert "No CT images found" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    assert main(["triage", str(tmp_path), "--model", str(bad)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


def test_triage_as_a_command_prints_csv_to_stdout(tiny_model, study_folder):
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "triage", str(study_folder / "b"), "--model",
                          str(tiny_model)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.strip().splitlines()) == 7 and run.stdout.startswith("path,patient,")


def _undecodable_copy(src: Path, dst: Path) -> None:
    """The same slice (same series, same position) as RLE whose stream is corrupt: the header scan accepts
    it, the decoder fails on it (pylibjpeg-rle panics, a BaseException)."""
    from pydicom import uid
    from pydicom.encaps import encapsulate, generate_frames

    from tests import dicom_factory as make

    make.save_with_syntax(pydicom.dcmread(src), dst, uid.RLELossless)
    ds = pydicom.dcmread(dst)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    frame[64:] = bytes(range(256)) * (len(frame[64:]) // 256) + bytes(len(frame[64:]) % 256)
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(dst)


@pytest.fixture(scope="module")
def private_study(tmp_path_factory):
    """A phantom study whose patient has a name, an ID and a study date; one slice cannot be decoded and one
    file named after the patient is broken."""
    root = tmp_path_factory.mktemp("private") / "DOE^JANE study"
    paths = write_phantom_study(make_phantom(seed=6, subtypes=["subdural"], n_slices=8, size=64), root,
                                patient_name="DOE^JANE", patient_id="MRN-4711")
    date = str(pydicom.dcmread(paths[0]).StudyDate)
    _undecodable_copy(paths[3], root / "DOE^JANE_slice4.dcm")
    paths[3].unlink()
    (root / "DOE^JANE_notes.dcm").write_bytes(b"DICM" * 10)
    return root, date


def test_one_undecodable_slice_is_marked_and_the_rest_is_still_triaged(tiny_model, private_study, tmp_path):
    root, _ = private_study
    out, summary = tmp_path / "s.csv", tmp_path / "s.json"
    assert main(["triage", str(root), "--model", str(tiny_model), "--out", str(out), "--json", str(summary)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 8
    broken = [r for r in rows if r["slice_error"]]
    assert len(broken) == 1 and "RLE" in broken[0]["slice_error"] and broken[0]["path"].endswith("slice4.dcm")
    assert broken[0]["slice_index"] == "4"  # the fourth slice, counted from 1
    assert all(broken[0][f"p_{c}"] == "" and broken[0][f"flag_{c}"] == "0" for c in CLASSES)
    assert all(r[f"p_{c}"] != "" for r in rows if not r["slice_error"] for c in CLASSES)
    series = json.loads(summary.read_text())["studies"][0]["series"][0]
    assert series["complete"] and [u["slice"] for u in series["unreadable_slices"]] == [int(broken[0]["slice_index"])]


def test_anonymised_triage_names_no_patient_file_or_date_anywhere(tiny_model, private_study, tmp_path):
    root, date = private_study
    out, summary = tmp_path / "s.csv", tmp_path / "s.json"
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "triage", str(root), "--model", str(tiny_model),
                          "--out", str(out), "--json", str(summary), "--anonymise"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "RUST_BACKTRACE": "0"})
    assert run.returncode == 0, run.stderr
    everything = run.stdout + run.stderr + out.read_text() + summary.read_text()
    header = pydicom.dcmread(sorted(root.glob("ID_*.dcm"))[0], stop_before_pixels=True)
    uids = (header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID)  # a UID can hold the date
    for identifier in ("DOE", "JANE", "MRN-4711", date, str(root), "slice4", "notes", *uids):
        assert identifier not in everything, identifier
    rows = list(csv.DictReader(open(out)))
    assert {(r["study_uid"], r["series_uid"], r["sop_instance_uid"]) for r in rows} == {("study 1", "series 1.1", "")}
    report = json.loads(summary.read_text())
    assert {(s["file_number"], s["reason"]) for s in report["skipped"]} >= {(1, "not a DICOM file")}
    assert "could not be decoded" in run.stderr


def test_the_json_carries_each_series_geometry_warnings(tiny_model, tmp_path):
    """A gap in the series (a slice missing from the folder) is said in the JSON as `info` says it."""
    write_phantom_study(make_phantom(seed=6, subtypes=[], n_slices=8, size=64), tmp_path / "gap", patient_id="PAT-G")
    sorted((tmp_path / "gap").glob("*.dcm"), key=lambda p: pydicom.dcmread(p).InstanceNumber)[4].unlink()
    summary = tmp_path / "studies.json"
    assert main(["triage", str(tmp_path / "gap"), "--model", str(tiny_model), "--json", str(summary)]) == 0
    series = json.loads(summary.read_text())["studies"][0]["series"][0]
    expected = list(ich_viewer.load(tmp_path / "gap").series[0].geometry.warnings)
    assert expected and series["geometry_warnings"] == expected


def test_positions_the_files_do_not_state_are_not_written_as_measured(tiny_model, tmp_path):
    """Found by an outside tester: a CT without ImagePositionPatient triaged with z 0.000, 1.000, 2.000, as if
    measured, and the window showed 'z 1.0 mm'."""
    from ich_viewer.core.viewer_model import ViewerModel

    paths = write_phantom_study(make_phantom(seed=4, subtypes=[], n_slices=3, size=64), tmp_path / "nopos")
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    result = ich_viewer.load(tmp_path / "nopos")
    assert not result.series[0].positions_known
    out = tmp_path / "slices.csv"
    assert main(["triage", str(tmp_path / "nopos"), "--model", str(tiny_model), "--out", str(out)]) == 0
    assert [row["z"] for row in csv.DictReader(open(out))] == ["", "", ""]
    viewer = ViewerModel()
    viewer.set_result(result)
    viewer.open_series(result.studies[0], result.studies[0].series[0])
    assert any("z not stated" in line for line in viewer.corner_lines())
    viewer.close_series()
