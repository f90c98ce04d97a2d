"""The synthetic phantom: tissues in range, subtype shapes, labels that follow the lesions, DICOM."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest
from skimage.morphology import dilation, disk

import ich_viewer
from ich_viewer.core.phantom import BRAIN_DEPTH, CLASSES, MIN_LESION_AREA_MM2, RSNA_ORDER, SUBTYPES, make_phantom, write_phantom_study


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=3, n_slices=24, size=256)


def test_same_seed_same_phantom_other_seed_differs():
    a, b = make_phantom(seed=5, n_slices=6, size=128), make_phantom(seed=5, n_slices=6, size=128)
    np.testing.assert_array_equal(a.hu, b.hu)
    assert not np.array_equal(a.hu, make_phantom(seed=6, n_slices=6, size=128).hu)


def test_tissues_have_head_ct_values(phantom):
    hu = phantom.hu
    assert np.median(hu[:, 0, :]) == pytest.approx(-1000, abs=10)  # air at the edge
    assert np.percentile(hu, 99.9) > 700  # cortical bone
    middle = hu[12, 118:138, 100:110]  # white matter beside the midline at mid level
    assert 15 < float(np.median(middle)) < 50


def test_labels_follow_lesion_masks_and_any_is_their_or(phantom):
    min_pixels = MIN_LESION_AREA_MM2 / phantom.pixel_spacing**2
    for name, mask in phantom.masks.items():
        expected = (mask.sum(axis=(1, 2)) >= min_pixels).astype(np.uint8)
        np.testing.assert_array_equal(phantom.labels[:, CLASSES.index(name)], expected)
        assert expected.any(), f"{name} lesion missing"
        blood = phantom.hu[mask]
        assert 40 < float(np.median(blood)) < 95, name  # acute blood (noise spreads single pixels)
    np.testing.assert_array_equal(phantom.labels[:, 0], phantom.labels[:, 1:].max(axis=1))
    assert set(phantom.masks) == set(SUBTYPES)


def test_no_subtypes_means_no_labels():
    clean = make_phantom(seed=1, subtypes=[], n_slices=8, size=128)
    assert clean.labels.sum() == 0 and not clean.masks
    with pytest.raises(ValueError, match="valid: epidural"):
        make_phantom(subtypes=["stroke"])


def test_epidural_is_a_lens_against_the_inner_table_and_subdural_a_long_thin_crescent(phantom):
    k_e = int(np.argmax(phantom.masks["epidural"].sum(axis=(1, 2))))
    k_s = int(np.argmax(phantom.masks["subdural"].sum(axis=(1, 2))))
    epidural, subdural = phantom.masks["epidural"][k_e], phantom.masks["subdural"][k_s]
    # Both hug the skull: along their whole length, the outer edge touches bone (> 300 HU).
    for mask, k in ((epidural, k_e), (subdural, k_s)):
        touching = dilation(mask, disk(2)) & (phantom.hu[k] > 300)
        rows, cols = np.nonzero(mask)
        assert touching.sum() >= 0.5 * np.hypot(np.ptp(rows), np.ptp(cols))
    # The epidural is thick for its length (lens), the subdural long and thin (crescent).
    def extent_and_area(mask):
        rows, cols = np.nonzero(mask)
        extent = np.hypot(np.ptp(rows), np.ptp(cols))
        return extent, mask.sum()
    e_extent, e_area = extent_and_area(epidural)
    s_extent, s_area = extent_and_area(subdural)
    assert e_area / e_extent > s_area / s_extent  # mean thickness
    assert s_extent > e_extent


def test_intraventricular_blood_layers_posteriorly(phantom):
    mask = phantom.masks["intraventricular"]
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    rows = np.nonzero(mask[k])[0]
    csf_rows = np.nonzero((phantom.hu[k] > -20) & (phantom.hu[k] < 25))[0]
    assert rows.mean() > 256 / 2 - 20  # in the posterior (lower) part of the head image
    assert rows.min() > np.percentile(csf_rows, 5)


def test_written_study_round_trips_through_the_loader(tmp_path, phantom):
    small = make_phantom(seed=4, subtypes=["subdural", "intraventricular"], n_slices=10, size=128)
    for storage in ("int16", "uint12"):
        out = tmp_path / storage
        paths = write_phantom_study(small, out, storage=storage)
        assert all(p.name.startswith("ID_") and len(p.stem) == 12 for p in paths)
        series = ich_viewer.load(out).series[0]
        np.testing.assert_array_equal(series.volume(), np.maximum(np.round(small.hu), -1024))
        np.testing.assert_allclose(series.z, small.z)
        ds = pydicom.dcmread(paths[0])
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
        assert pydicom.uid.UID(ds.SOPInstanceUID).is_valid
        with open(out / "labels.csv") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["ID", "Label"] and len(rows) == 1 + 6 * 10
        assert [r[0].split("_", 2)[2] for r in rows[1:7]] == list(RSNA_ORDER)
        for i, p in enumerate(paths):
            got = {r[0].split("_", 2)[2]: int(r[1]) for r in rows[1 + 6 * i: 7 + 6 * i]}
            assert all(got[c] == small.labels[i, CLASSES.index(c)] for c in CLASSES)
            assert rows[1 + 6 * i][0].startswith(p.stem)
    again = write_phantom_study(small, tmp_path / "again")
    assert [pydicom.dcmread(p).SOPInstanceUID for p in again] == [pydicom.dcmread(p).SOPInstanceUID for p in paths]


def test_refuses_to_write_into_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        write_phantom_study(make_phantom(n_slices=2, size=64), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
