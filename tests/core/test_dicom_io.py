"""Opening, grouping, Hounsfield units and bad input, on real DICOM files."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_rescale

import ich_viewer
from ich_viewer.core.errors import NoImagesFoundError
from ich_viewer.core.series import AIR_HU
from ich_viewer.core.volume import read_volume
from tests import dicom_factory as make
from tests.conftest import dicom_testfile


def reference_hu(path: str) -> np.ndarray:
    """pydicom's own rescale, clamped at air like the loader."""
    ds = pydicom.dcmread(path)
    return np.maximum(apply_rescale(ds.pixel_array, ds).astype(np.float32), AIR_HU)


def reasons(result_or_error) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in result_or_error.skipped}


# ----------------------------------------------------------------------------- opening


def test_a_single_real_ct_file_opens_as_one_series():
    result = ich_viewer.load(dicom_testfile("CT_small.dcm"))
    assert len(result.studies) == 1 and len(result.series) == 1
    series = result.series[0]
    assert len(series) == 1 and series.files == [dicom_testfile("CT_small.dcm")]
    volume = read_volume(series)
    assert volume.shape == (1, 128, 128) and volume.dtype == np.float32
    np.testing.assert_array_equal(volume[0], reference_hu(dicom_testfile("CT_small.dcm")))


def test_folder_is_read_recursively_and_several_paths_combine(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    make.copy(dicom_testfile("693_UNCR.dcm"), tmp_path / "a" / "deep" / "x.dcm")
    other = make.copy(dicom_testfile("CT_small.dcm"), tmp_path / "ct_small.dcm")
    assert len(ich_viewer.load(tmp_path / "a").series) == 1
    assert len(ich_viewer.load([tmp_path / "a", other]).series) == 2


def test_zip_archive_gives_the_same_volume_as_the_folder(tmp_path, rsna_dir):
    files = sorted(rsna_dir.glob("*.dcm"))[:3]
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, arcname=f"scans/{f.name}")
        zf.writestr("scans/readme.txt", "not dicom")
    from_zip = ich_viewer.load(archive)
    from_files = ich_viewer.load(files)
    assert [s.uid for s in from_zip.series] == [s.uid for s in from_files.series]
    for a, b in zip(from_zip.series, from_files.series):
        np.testing.assert_array_equal(read_volume(a), read_volume(b))
    assert reasons(from_zip) == {}  # a readme beside the scans is not a broken image: counted apart
    assert [Path(p).name for p in from_zip.other_files] == ["readme.txt"] and from_zip.files_found == 4
    assert all(str(archive) in f for s in from_zip.series for f in s.files)


def test_dicomdir_follows_its_records_and_reports_non_ct(tmp_path):
    result = ich_viewer.load(dicom_testfile("dicomdirtests/DICOMDIR"))
    assert [s.rows for s in result.series] and all(len(s) >= 1 for s in result.series)
    folders = {Path(f).parent.name for s in result.series for f in s.files}
    assert folders and all(name.startswith("CT") for name in folders)  # CR and MR records are reported
    assert any("not CT (modality CR)" == r for r in reasons(result).values())
    assert any("not CT (modality MR)" == r for r in reasons(result).values())


def test_a_dicomdir_record_whose_file_is_missing_is_a_skipped_file_not_a_warning(tmp_path, capfd):
    """pydicom's FileSet drops such a record with a warning that printed the full path on stderr, even with
    triage's --anonymise, and the file was counted nowhere: it is now a skipped file with its reason."""
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for i in range(3):
        ds = make.read("CT_small.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.91.{i + 1}"
        ds.InstanceNumber, ds.ImagePositionPatient = i + 1, [0.0, 0.0, 5.0 * i]
        fileset.add(ds)
    fileset.write(tmp_path / "Doe_Jane_CD")
    images = sorted(p for p in (tmp_path / "Doe_Jane_CD").rglob("*") if p.is_file() and p.name != "DICOMDIR")
    images[1].unlink()
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping the loader fails the test
        result = ich_viewer.load(tmp_path / "Doe_Jane_CD" / "DICOMDIR")
    assert sum(len(s) for s in result.series) == 2 and result.files_found == 3
    assert reasons(result) == {images[1].name: "listed in the DICOMDIR but missing"}
    assert capfd.readouterr().err == ""


def test_a_bare_key_or_number_in_an_error_is_named_by_its_type():
    """A broken DICOMDIR was reported as "unreadable DICOMDIR (3126)": a KeyError's whole text."""
    from ich_viewer.core.errors import one_line

    assert one_line(KeyError(3126)) == "KeyError 3126"
    assert one_line(ValueError("the file ends early")) == "the file ends early"
    assert one_line(ValueError()) == "ValueError"


def test_an_operating_system_error_leaves_the_path_out_of_the_reason(tmp_path):
    """The error's text carries the file's path ("[Errno 2] No such file or directory: '/.../Doe_Jane.dcm'"),
    which the anonymised reason ("file 1 of 1: ...") must not show; the reason keeps what happened."""
    from ich_viewer.core.dicom_io import scan_file
    from ich_viewer.core.series import FileRef

    skipped = scan_file(FileRef(str(tmp_path / "Doe_Jane_MRN1.dcm")))
    assert skipped.reason == "unreadable DICOM file (No such file or directory)"
    assert "Doe_Jane" not in skipped.anonymous(1)


def test_another_patients_files_under_the_same_uids_are_reported_not_merged(tmp_path):
    """Found by an outside tester: one patient's slices re-tagged with another's study and series UIDs were read
    as one 60-slice head of the first patient, "complete", with no word. The majority keeps the study."""
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    write_phantom_study(make_phantom(seed=1, subtypes=[], n_slices=6, size=64), tmp_path / "a", patient_id="PAT-A")
    write_phantom_study(make_phantom(seed=2, subtypes=[], n_slices=4, size=64), tmp_path / "b", patient_id="PAT-B")
    first = pydicom.dcmread(next((tmp_path / "a").glob("*.dcm")))
    for path in sorted((tmp_path / "b").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, first.SeriesInstanceUID
        ds.save_as(path)
    result = ich_viewer.load(tmp_path)
    assert [s.patient.id for s in result.studies] == ["PAT-A"] and [len(s) for s in result.series] == [6]
    assert sorted(reasons(result)) == sorted(p.name for p in (tmp_path / "b").glob("*.dcm"))
    assert set(reasons(result).values()) == {"another patient's image under the same study UID as the study opened"}


def test_bad_files_among_good_ones_are_skipped_with_a_reason_each(tmp_path):
    make.copy(dicom_testfile("CT_small.dcm"), tmp_path / "good.dcm")
    make.truncated_copy(dicom_testfile("CT_small.dcm"), tmp_path / "truncated.dcm")
    (tmp_path / "random.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(3000))
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    make.copy(dicom_testfile("MR_small.dcm"), tmp_path / "mr.dcm")
    make.copy(dicom_testfile("SC_rgb.dcm"), tmp_path / "colour.dcm")
    no_pixels = make.read("CT_small.dcm")
    del no_pixels.PixelData
    no_pixels.save_as(tmp_path / "nopixels.dcm")

    result = ich_viewer.load(tmp_path)

    assert [Path(f).name for s in result.series for f in s.files] == ["good.dcm"]
    why = reasons(result)
    assert why["truncated.dcm"].startswith("truncated file")
    assert why["random.dcm"].startswith(("unreadable DICOM file", "not a DICOM image"))
    assert why["report.pdf"] == "not a DICOM file"
    assert why["mr.dcm"] == "not CT (modality MR)"
    assert why["colour.dcm"] == "not CT (modality OT)"
    assert why["nopixels.dcm"] == "no pixel data"
    assert all("\n" not in r for r in why.values())


def test_colour_ct_is_refused_as_colour(tmp_path):
    make.relabel_as_ct("SC_rgb.dcm", tmp_path / "rgb_ct.dcm")
    with pytest.raises(NoImagesFoundError) as error:
        ich_viewer.load(tmp_path)
    assert "colour image" in reasons(error.value)["rgb_ct.dcm"]


def test_nothing_usable_raises_one_typed_error_listing_the_reasons(tmp_path):
    with pytest.raises(NoImagesFoundError, match="No CT images found in 0 file"):
        ich_viewer.load(tmp_path)
    make.copy(dicom_testfile("MR_small.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(NoImagesFoundError, match="modality MR") as error:
        ich_viewer.load([tmp_path, tmp_path / "missing"])
    assert reasons(error.value) == {"mr.dcm": "not CT (modality MR)", "missing": "does not exist"}


def test_undecodable_syntax_names_the_syntax(tmp_path):
    ds = make.read("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = "1.3.6.1.4.1.5962.300.1"  # a vendor's private syntax
    ds.save_as(tmp_path / "private.dcm", implicit_vr=False, little_endian=True)
    with pytest.raises(NoImagesFoundError) as error:
        ich_viewer.load(tmp_path)
    assert "1.3.6.1.4.1.5962.300.1" in reasons(error.value)["private.dcm"]


def test_missing_decoder_message_says_what_would_decode_it(tmp_path, monkeypatch):
    from ich_viewer.core import dicom_pixels

    class Unavailable:
        is_available = False

    monkeypatch.setattr(dicom_pixels, "get_decoder", lambda tsuid: Unavailable())
    with pytest.raises(NoImagesFoundError) as error:
        ich_viewer.load(dicom_testfile("693_J2KR.dcm"))
    reason = reasons(error.value)["693_J2KR.dcm"]
    assert "JPEG 2000 Image Compression (Lossless Only)" in reason and "pylibjpeg-openjpeg" in reason


# ----------------------------------------------------------------------------- grouping


def test_rsna_invalid_uids_group_silently(rsna_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ich_viewer.load(rsna_dir)
        volumes = [read_volume(s) for s in result.series[:5]]
    assert not result.skipped
    assert sum(len(s) for s in result.series) == 155
    assert all(s.uid.startswith("ID_") for s in result.series)
    assert all(v.shape == (1, 512, 512) for v in volumes)


def test_two_series_in_one_folder_are_kept_apart(tmp_path):
    hu = np.full((16, 16), 30.0)
    for i in range(3):
        make.ct_slice_from_hu(hu, tmp_path / f"a{i}.dcm", z=i * 5, series_uid="1.2.3.1", study_uid="1.2.3", instance=i + 1)
        make.ct_slice_from_hu(hu + 10, tmp_path / f"b{i}.dcm", z=i * 2, series_uid="1.2.3.2", study_uid="1.2.3", instance=i + 1)
    result = ich_viewer.load(tmp_path)
    assert len(result.studies) == 1
    by_uid = {s.uid: s for s in result.series}
    assert set(by_uid) == {"1.2.3.1", "1.2.3.2"}
    assert by_uid["1.2.3.1"].spacing[0] == pytest.approx(5) and by_uid["1.2.3.2"].spacing[0] == pytest.approx(2)
    assert float(read_volume(by_uid["1.2.3.2"]).mean()) == pytest.approx(40)


def test_a_series_mixing_monochrome1_and_2_keeps_the_majority_and_reports_the_rest(tmp_path):
    """An outside tester: a series whose files mixed MONOCHROME1 and MONOCHROME2 was shown all inverted or none,
    as its first file said. The majority's grey scale is kept, the others are skipped saying why, as a differing
    orientation is."""
    hu = np.full((16, 16), 30.0)
    for i in range(5):
        path = make.ct_slice_from_hu(hu, tmp_path / f"s{i}.dcm", z=i * 5, series_uid="1.2.3.1", study_uid="1.2.3",
                                     instance=i + 1)
        if i in (0, 3):  # the first file among them: the minority must not decide
            ds = pydicom.dcmread(path)
            ds.PhotometricInterpretation = "MONOCHROME1"
            ds.save_as(path)
    result = ich_viewer.load(tmp_path)
    series = result.series[0]
    assert len(series) == 3 and not series.monochrome1
    assert reasons(result) == {"s0.dcm": "MONOCHROME1 differs from the rest of its series (MONOCHROME2)",
                               "s3.dcm": "MONOCHROME1 differs from the rest of its series (MONOCHROME2)"}


# ----------------------------------------------------------------------------- Hounsfield units


@pytest.mark.parametrize("bits", [16, 12])
def test_real_rsna_slices_in_both_storages_rescale_like_pydicom(rsna_dir, bits):
    files = [f for f in sorted(rsna_dir.glob("*.dcm")) if pydicom.dcmread(f, stop_before_pixels=True).BitsStored == bits][:4]
    assert files
    for f in files:
        hu = read_volume(ich_viewer.load(f).series[0])[0]
        np.testing.assert_array_equal(hu, reference_hu(str(f)))
        assert hu.min() >= AIR_HU  # -2000 / -3024 out-of-field markers become air


def test_pixel_padding_value_becomes_air(tmp_path):
    ds = make.read("CT_small.dcm")
    stored = ds.pixel_array.copy()
    stored[:10, :10] = -2000
    ds.PixelData = stored.tobytes()
    ds.PixelPaddingValue = -2000
    ds.save_as(tmp_path / "padded.dcm")
    hu = read_volume(ich_viewer.load(tmp_path / "padded.dcm").series[0])[0]
    assert np.all(hu[:10, :10] == AIR_HU)
    np.testing.assert_array_equal(hu[20:, 20:], reference_hu(dicom_testfile("CT_small.dcm"))[20:, 20:])


def test_rsna_12bit_intercept_wrap_is_corrected(tmp_path, rsna_dir):
    """The RSNA 2019 defect: 12-bit unsigned storage, intercept > -100, values wrapped at 4096."""
    source = next(f for f in sorted(rsna_dir.glob("*.dcm")) if pydicom.dcmread(f, stop_before_pixels=True).BitsStored == 12)
    true_hu = np.clip(reference_hu(str(source)), -1000, 3000)
    ds = pydicom.dcmread(source)
    ds.PixelData = (np.round(true_hu).astype(np.int32) % 4096).astype(np.uint16).tobytes()
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.save_as(tmp_path / "defect.dcm")

    naive = apply_rescale(pydicom.dcmread(tmp_path / "defect.dcm").pixel_array, pydicom.dcmread(tmp_path / "defect.dcm"))
    assert naive.max() > 3000 and (naive > 3000).mean() > 0.2  # air read naively as dense bone
    fixed = read_volume(ich_viewer.load(tmp_path / "defect.dcm").series[0])[0]
    np.testing.assert_array_equal(fixed, np.round(true_hu))


@pytest.mark.parametrize("width, kept", [(80, True), (0, False), (-5, False), (1e30, False)])
def test_a_stored_window_is_kept_only_when_it_can_be_shown(tmp_path, width, kept):
    """An outside tester's series stored a width of 1e30, which key 7 showed as one flat grey."""
    ds = make.read("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth = 40, width
    ds.save_as(tmp_path / "one.dcm")
    window = ich_viewer.load(tmp_path).series[0].file_window
    assert (window is not None) is kept and (not kept or (window.center, window.width) == (40, 80))
