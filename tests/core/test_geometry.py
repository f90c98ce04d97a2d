"""Slice ordering and spacing reports, on generated series and the real CQ500 series."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest

import ich_viewer
from ich_viewer.core.errors import NoImagesFoundError
from ich_viewer.core.geometry import order_slices
from ich_viewer.core.volume import read_volume
from tests import dicom_factory as make

TILTED = (1.0, 0.0, 0.0, 0.0, float(np.cos(0.3)), float(-np.sin(0.3)))


def write_series(folder, zs, *, names=None, orientation=(1, 0, 0, 0, 1, 0), instances=None):
    """Slices whose pixel value encodes their z, so order can be checked from the volume."""
    names = names or [f"s{i:03d}.dcm" for i in range(len(zs))]
    for i, (z, name) in enumerate(zip(zs, names)):
        make.ct_slice_from_hu(np.full((8, 8), z), folder / name, z=z, series_uid="1.2.9.1",
                              study_uid="1.2.9", instance=(instances or list(range(1, len(zs) + 1)))[i],
                              orientation=orientation)
    return ich_viewer.load(folder).series[0]


def test_order_follows_position_on_a_tilted_normal_not_file_names(tmp_path):
    zs = [40.0, 0.0, 10.0, 30.0, 20.0]
    series = write_series(tmp_path, zs, orientation=TILTED, instances=[1, 2, 3, 4, 5])
    assert series.geometry.ordering == "position"
    np.testing.assert_allclose(series.z - series.z[0], [0, 10, 20, 30, 40], atol=1e-4)
    np.testing.assert_allclose(read_volume(series)[:, 0, 0], [0, 10, 20, 30, 40])
    assert series.spacing[0] == pytest.approx(10) and not series.geometry.warnings


@pytest.mark.parametrize("orientation", [(-1, 0, 0, 0, 1, 0), (1, 0, 0, 0, -1, 0)])
def test_a_mirrored_orientation_still_orders_inferior_to_superior_with_the_patients_z(tmp_path, orientation):
    """An outside tester: with rows mirrored (IOP -1,0,0 / 0,1,0) or columns flipped, the slice normal points to the
    feet; the series was ordered vertex first and its z read with the wrong sign ("z -10.0 mm" at IPP z +10)."""
    series = write_series(tmp_path, [40.0, -10.0, 10.0, 30.0, 20.0], orientation=orientation)
    patient_z = {name: float(pydicom.dcmread(name).ImagePositionPatient[2]) for name in series.files}
    assert series.geometry.ordering == "position"
    assert sorted(patient_z.values()) == [-40, -30, -20, -10, 10]  # placed along the normal, which points to the feet
    assert [patient_z[name] for name in series.files] == sorted(patient_z.values())  # inferior first
    np.testing.assert_allclose(series.z, sorted(patient_z.values()), atol=1e-4)  # the patient's z, as it is


def test_falls_back_to_instance_number_then_file_name(tmp_path):
    series = write_series(tmp_path, [0.0, 10.0, 20.0], instances=[3, 1, 2])
    for name in series.files:  # strip positions
        ds = pydicom.dcmread(name)
        del ds.ImagePositionPatient
        ds.save_as(name)
    by_instance = ich_viewer.load(tmp_path).series[0]
    assert by_instance.geometry.ordering == "instance"
    np.testing.assert_allclose(read_volume(by_instance)[:, 0, 0], [10, 20, 0])
    for name in by_instance.files:
        ds = pydicom.dcmread(name)
        del ds.InstanceNumber
        ds.save_as(name)
    by_name = ich_viewer.load(tmp_path).series[0]
    assert by_name.geometry.ordering == "filename"
    assert [f.rsplit("/", 1)[1] for f in by_name.files] == ["s000.dcm", "s001.dcm", "s002.dcm"]
    assert "file name" in by_name.geometry.warnings[0]


@pytest.mark.parametrize("z", ["1e308", "-2e6"])
def test_a_position_kilometres_away_counts_as_no_position(tmp_path, z):
    """An outside tester: ImagePositionPatient 1e308 is finite, so it was taken, and the series read as spaced
    5e307 mm with a gap. A position beyond a kilometre is not a measurement: the series falls back to instance order."""
    series = write_series(tmp_path, [0.0, 5.0, 10.0])
    ds = pydicom.dcmread(series.files[2])
    ds.ImagePositionPatient = [-60, -60, z]
    ds.save_as(series.files[2])
    reread = ich_viewer.load(tmp_path).series[0]
    assert reread.geometry.ordering == "instance" and not reread.geometry.gaps
    assert np.isfinite(reread.z).all() and abs(reread.spacing[0]) < 1e6
    assert "no usable ImagePositionPatient" in reread.geometry.warnings[0]


def test_duplicates_gaps_and_irregular_spacing_are_reported(tmp_path):
    (tmp_path / "dup").mkdir(), (tmp_path / "gap").mkdir(), (tmp_path / "irr").mkdir()
    dup = write_series(tmp_path / "dup", [0.0, 5.0, 5.0, 10.0])
    assert dup.geometry.duplicates == ((1, 2),) and len(dup) == 4
    gap = write_series(tmp_path / "gap", [0.0, 5.0, 10.0, 25.0, 30.0])
    assert gap.geometry.gaps == (2,) and not gap.geometry.irregular
    irregular = write_series(tmp_path / "irr", [0.0, 5.0, 11.0, 15.0, 20.0])
    assert irregular.geometry.irregular and not irregular.geometry.gaps
    assert any("irregular" in w for w in irregular.geometry.warnings)


def test_same_file_twice_is_kept_once(tmp_path):
    write_series(tmp_path, [0.0, 5.0])
    make.copy(tmp_path / "s001.dcm", tmp_path / "copy_of_s001.dcm")
    result = ich_viewer.load(tmp_path)
    assert len(result.series[0]) == 2
    assert [s.reason for s in result.skipped] == ["duplicate of another file (same SOP Instance UID)"]


def test_multiframe_enhanced_ct_yields_its_frames_as_slices():
    series = ich_viewer.load(make.dicom_testfile("eCT_Supplemental.dcm")).series[0]
    assert len(series) == 2 and sorted(s.frame for s in series.slices) == [0, 1]
    assert series.geometry.ordering == "position" and series.z[1] > series.z[0]
    volume = read_volume(series)
    stored = pydicom.dcmread(make.dicom_testfile("eCT_Supplemental.dcm")).pixel_array
    for index, ref in enumerate(series.slices):  # each slice is its frame, rescaled per frame
        expected = stored[ref.frame] * ref.hu.slope + ref.hu.intercept
        np.testing.assert_allclose(volume[index], np.maximum(expected, -1024))


def test_an_enhanced_ct_whose_per_frame_groups_miss_frames_is_refused_not_read_with_guessed_hu(tmp_path):
    """Found by an outside tester: with 3 per-frame groups for 6 frames, the last three took slope 1 and
    intercept 0 and read as bone, without a word."""
    ds = make.read("eCT_Supplemental.dcm")
    assert ds.NumberOfFrames == 2 and len(ds.PerFrameFunctionalGroupsSequence) == 2
    del ds.PerFrameFunctionalGroupsSequence[1]
    ds.save_as(tmp_path / "short.dcm")
    with pytest.raises(NoImagesFoundError, match="its per-frame functional groups describe 1 of its 2 frames"):
        ich_viewer.load(tmp_path)


def test_an_enhanced_ct_frame_without_a_rescale_or_a_position_is_refused(tmp_path):
    """A third tester: a frame whose groups held no rescale read its stored values as HU (bone for brain), and
    one without a position scrambled the order, both without a word."""
    ds = make.read("eCT_Supplemental.dcm")
    shared_transform = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    del ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence = shared_transform  # frame 1 has its own
    ds.save_as(tmp_path / "no_rescale.dcm")
    with pytest.raises(NoImagesFoundError, match="frame 2 of its 2 has no rescale, so their Hounsfield units"):
        ich_viewer.load(tmp_path / "no_rescale.dcm")
    ds = make.read("eCT_Supplemental.dcm")
    del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    ds.save_as(tmp_path / "no_position.dcm")
    with pytest.raises(NoImagesFoundError, match="frame 2 of its 2 has no position, so the slices' order is unknown"):
        ich_viewer.load(tmp_path / "no_position.dcm")


def test_real_cq500_series_orders_by_position_and_reports_its_gap(cq500_dir):
    series = ich_viewer.load(cq500_dir).series[0]
    assert len(series) == 238 and series.geometry.ordering == "position"
    assert np.all(np.diff(series.z) > 0)
    assert len(series.geometry.gaps) == 1 and not series.geometry.duplicates
    with open(cq500_dir / "manifest.csv") as f:
        manifest = sorted(csv.DictReader(f), key=lambda row: float(row["z"]))
    assert [p.rsplit("/", 1)[1] for p in series.files] == [row["file"] for row in manifest]


def test_order_slices_is_a_pure_function_of_refs():
    ordered, geometry = order_slices([], None)
    assert ordered == [] and geometry.ordering == "instance"
