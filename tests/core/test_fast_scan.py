"""The GDCM fast scan gives exactly what pydicom's scan gives, and hands every doubtful file to pydicom."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

import ich_viewer
from ich_viewer.core import dicom_io, fast_scan
from tests import dicom_factory as make
from tests.conftest import dicom_testfile

# Uncompressed little/big endian, JPEG Lossless, JPEG 2000, JPEG-LS, RLE: real files relabelled or as-is.
SYNTAX_FILES = ["CT_small.dcm", "693_J2KR.dcm", "693_UNCI.dcm", "MR_small_bigendian.dcm",
                "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "JPEG-LL.dcm"]


def describe(result) -> list:
    """Everything the scan decides, in a comparable form."""
    out = []
    for study in result.studies:
        out.append((study.uid, study.date, study.description, study.patient))
        for series in study.series:
            out.append((series.uid, series.description, series.number, series.rows, series.columns,
                        series.pixel_spacing, series.orientation, series.file_window, series.geometry))
            out.extend((s.file, s.frame, s.sop_uid, s.instance, s.position, s.hu, s.transfer_syntax)
                       for s in series.slices)
    return out + sorted((Path(s.path).name, s.reason) for s in result.skipped)


def load_without_fast_path(paths, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(fast_scan, "gdcm", None)
        return ich_viewer.load(paths)


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Real test files of several syntaxes, a truncated copy, an MR image, a non-DICOM file."""
    for name in SYNTAX_FILES:
        src = dicom_testfile(name)
        ds = pydicom.dcmread(src)
        if ds.Modality != "CT":
            make.relabel_as_ct(name, tmp_path / name)
        else:
            shutil.copy(src, tmp_path / name)
    make.truncated_copy(dicom_testfile("CT_small.dcm"), tmp_path / "truncated.dcm")
    make.truncated_copy(dicom_testfile("693_J2KR.dcm"), tmp_path / "truncated_j2k.dcm")
    shutil.copy(dicom_testfile("MR_small.dcm"), tmp_path / "mr.dcm")
    (tmp_path / "notes.txt").write_text("not DICOM")
    return tmp_path


def test_fast_and_pydicom_scans_agree_on_real_files_of_every_syntax(mixed_folder, monkeypatch):
    fast = ich_viewer.load(mixed_folder)
    assert describe(fast) == describe(load_without_fast_path(mixed_folder, monkeypatch))
    reasons = {Path(s.path).name: s.reason for s in fast.skipped}
    assert "truncated" in reasons["truncated.dcm"]
    assert "truncated_j2k.dcm" in reasons  # pydicom's scan catches it as a duplicate of its intact source
    assert "not CT" in reasons["mr.dcm"]
    # a text file beside a study is not a broken DICOM: it is counted apart, not skipped with a reason
    assert "notes.txt" not in reasons and [Path(p).name for p in fast.other_files] == ["notes.txt"]


def test_fast_scan_vouches_only_for_intact_plain_ct(mixed_folder):
    paths = sorted(str(p) for p in mixed_folder.iterdir())
    vouched = {Path(p).name for p in fast_scan.scan_headers(paths, dicom_io.SCAN_TAGS)}
    # the fast path is really taken: JPEG 2000, native little and big endian (CT_small has elements
    # after its pixel data, so pydicom reads it)
    assert {"693_J2KR.dcm", "693_UNCI.dcm", "MR_small_bigendian.dcm"} <= vouched
    assert not vouched & {"truncated.dcm", "truncated_j2k.dcm", "mr.dcm", "notes.txt"}


def test_non_ascii_names_go_through_pydicom(tmp_path, monkeypatch):
    ds = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.save_as(tmp_path / "umlaut.dcm")
    assert fast_scan.scan_headers([str(tmp_path / "umlaut.dcm")], dicom_io.SCAN_TAGS) == {}
    assert ich_viewer.load(tmp_path).studies[0].patient.name == "Müller^Jürgen"


def test_a_file_name_that_is_not_utf8_costs_nothing_but_the_fast_path(tmp_path):
    """Found by an outside tester: one Latin-1 file name (b"Ren\\xe9e.dcm", from an old CD) made GDCM's scanner
    raise a TypeError for the whole folder, so nothing opened. That file now takes pydicom's path."""
    import os

    for i in range(3):
        ds = make.read("CT_small.dcm")
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.92.{i + 1}"
        ds.InstanceNumber, ds.ImagePositionPatient = i + 1, [0.0, 0.0, 5.0 * i]
        name = b"Ren\xe9e.dcm" if i == 1 else f"slice{i}.dcm".encode()
        ds.save_as(os.fsdecode(os.path.join(os.fsencode(tmp_path), name)))
    latin1 = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"Ren\xe9e.dcm"))
    found = fast_scan.scan_headers(sorted(str(p) for p in tmp_path.iterdir()), dicom_io.SCAN_TAGS)
    assert latin1 not in found  # and no exception for the other two
    result = ich_viewer.load(tmp_path)
    assert [len(s) for s in result.series] == [3] and not result.skipped


def test_fast_scan_matches_pydicom_on_the_real_cq500_series(cq500_dir, monkeypatch):
    paths = sorted(str(p) for p in cq500_dir.glob("*.dcm"))
    assert len(fast_scan.scan_headers(paths, dicom_io.SCAN_TAGS)) == len(paths)
    assert describe(ich_viewer.load(cq500_dir)) == describe(load_without_fast_path(cq500_dir, monkeypatch))
