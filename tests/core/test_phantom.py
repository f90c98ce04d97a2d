"""The synthetic phantom: tissues in range, subtype shapes, labels that follow the lesions, DICOM."""

from __future__ import annotations

import csv
import math

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

import ich_viewer
from ich_viewer.core import phantom as ph
from ich_viewer.core.dicom_write import write_ct_series
from ich_viewer.core.lesions import BLOOD_HU, fast_atan2, paste_lesions
from ich_viewer.core.phantom import (
    CLASSES,
    RSNA_ORDER,
    SUBTYPES,
    make_phantom,
    make_phantom_debug,
    min_lesion_pixels,
    write_phantom_study,
)
from ich_viewer.core.volume import read_volume


@pytest.fixture(scope="module")
def debug():
    return make_phantom_debug(seed=3, n_slices=24, size=256)


def _core(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 4 neighbours share the mask (away from partial-volume edges), per slice."""
    core = mask.copy()
    core[..., 1:, :] &= mask[..., :-1, :]
    core[..., :-1, :] &= mask[..., 1:, :]
    core[..., :, 1:] &= mask[..., :, :-1]
    core[..., :, :-1] &= mask[..., :, 1:]
    return core


def _largest_slice(mask: np.ndarray) -> int:
    return int(np.argmax(mask.sum(axis=(1, 2))))


def test_same_seed_same_phantom_other_seed_differs():
    a, b = make_phantom(seed=5, n_slices=6, size=128), make_phantom(seed=5, n_slices=6, size=128)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.masks.keys() == b.masks.keys() and all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert not np.array_equal(a.hu, make_phantom(seed=6, n_slices=6, size=128).hu)
    # The head does not depend on which lesions were asked for: only lesion pixels differ.
    clean = make_phantom(seed=5, subtypes=[], n_slices=6, size=128)
    near = np.zeros(a.hu.shape, bool)
    for mask in a.masks.values():
        near |= mask
    for _ in range(7):  # soft edges and the oedema rim stay within a few pixels of the blood
        near = near | np.roll(near, 1, 1) | np.roll(near, -1, 1) | np.roll(near, 1, 2) | np.roll(near, -1, 2)
    assert near.any() and np.array_equal(a.hu[~near], clean.hu[~near])


def test_series_shape_geometry_and_orientation(debug):
    series, truth = debug
    assert series.hu.shape == (24, 256, 256) and series.hu.dtype == np.float32
    assert series.labels.shape == (24, 6) and series.labels.dtype == np.uint8
    assert series.z.dtype == np.float64 and np.allclose(np.diff(series.z), series.slice_thickness)
    assert series.pixel_spacing == pytest.approx(240 / 256)
    brain = np.isin(truth.tissue, ph.BRAIN_TISSUES).sum(axis=(1, 2))
    assert brain[-1] < 0.5 * brain.max()  # the head closes towards the vertex (last slice)
    bone = np.isin(truth.tissue, (ph.BONE, ph.DENSE)).sum(axis=(1, 2)) / np.maximum(brain, 1)
    assert bone[:4].mean() > bone[8:16].mean()  # more bone at the skull base
    vent = (truth.tissue == ph.VENT).sum(axis=(1, 2))
    assert vent[:2].sum() == 0 and vent[-2:].sum() == 0 and vent[8:16].max() > 100  # only mid levels
    # Anterior is the top of the image: the orbits / frontal sinus side is at small row indices.
    rows = np.nonzero(truth.tissue[:4] == ph.SINUS)[1]
    assert np.median(rows) < 128
    # Patient left (theta > 0) is on the image's right (larger column index).
    epidural = next(les for les in truth.lesions if les.subtype == "epidural")
    centre_column = truth.head.cx / series.pixel_spacing + 127.5
    columns = np.nonzero(series.masks["epidural"])[2]
    assert np.sign(columns.mean() - centre_column) == np.sign(epidural.theta_center)


@pytest.mark.parametrize(
    "tissues, low, high",
    [
        ((ph.AIR,), -1010, -990),
        ((ph.SOFT,), 20, 60),
        ((ph.BONE,), 700, 1500),
        ((ph.GM,), 35, 45),
        ((ph.WM,), 25, 30),
        ((ph.VENT,), 0, 15),
        ((ph.CSF,), 0, 15),
    ],
)
def test_tissue_hu_ranges(tissues, low, high):
    series, truth = make_phantom_debug(seed=7, subtypes=[], n_slices=16, size=256)
    core = _core(np.isin(truth.tissue, tissues))
    assert core.sum() > 50
    assert low <= float(np.median(series.hu[core])) <= high


def test_noise_is_ct_like_and_diploe_is_less_dense_than_the_tables():
    series, truth = make_phantom_debug(seed=7, subtypes=[], n_slices=12, size=256)
    air = series.hu[:, :20, :20]
    assert 2.5 < float(air.std()) < 5.5  # sigma ~4 HU
    # Smoothed noise: neighbouring pixels are correlated.
    flat = air - air.mean()
    corr = float((flat[..., 1:] * flat[..., :-1]).mean() / flat.var())
    assert 0.3 < corr < 0.9
    bone, diploe = _core(truth.tissue == ph.BONE), _core(truth.tissue == ph.DIPLOE)
    assert np.median(series.hu[diploe]) < np.median(series.hu[bone]) - 200


def test_labels_follow_the_masks_exactly_and_any_is_their_or(debug):
    series, _ = debug
    n = min_lesion_pixels(series.pixel_spacing)
    assert set(series.masks) == set(SUBTYPES)
    for name in SUBTYPES:
        counts = series.masks[name].sum(axis=(1, 2))
        np.testing.assert_array_equal(series.labels[:, CLASSES.index(name)], (counts >= n).astype(np.uint8))
        assert not ((counts > 0) & (counts < n)).any()  # no sub-threshold tips left in a mask
        assert 2 <= counts.astype(bool).sum() < len(counts)  # a 3-D extent, not the whole series
        positive = np.nonzero(counts)[0]
        assert np.all(np.diff(positive) == 1)  # one contiguous slice range
        # Tapering: the ends of the extent are smaller than its middle.
        assert max(counts[positive[0]], counts[positive[-1]]) < counts.max()
    np.testing.assert_array_equal(series.labels[:, 0], series.labels[:, 1:].max(axis=1))
    assert min_lesion_pixels(240 / 512) == 12 and min_lesion_pixels(240 / 128) == 4


def test_lesion_pixels_are_acute_blood(debug):
    series, _ = debug
    for name, mask in series.masks.items():
        blood = series.hu[mask]
        assert blood.min() >= BLOOD_HU[0] and blood.max() <= BLOOD_HU[1], name
        assert 58 < float(np.median(blood)) < 82, name


def test_requested_subtypes_always_appear_and_none_means_clean():
    for seed in range(6):
        series = make_phantom(seed=seed, n_slices=12, size=128)
        assert series.labels[:, 1:].all(axis=0).sum() == 0  # not positive everywhere
        assert series.labels[:, 1:].any(axis=0).all(), f"seed {seed}: {series.labels.sum(axis=0)}"
    clean = make_phantom(seed=1, subtypes=[], n_slices=8, size=128)
    assert clean.labels.sum() == 0 and not clean.masks
    assert float(clean.hu.max()) > 700  # still a head (bone)
    one = make_phantom(seed=1, subtypes=["subdural"], n_slices=8, size=128)
    assert set(one.masks) == {"subdural"} and one.labels[:, 1:].sum(axis=0).nonzero()[0].tolist() == [4]
    with pytest.raises(ValueError, match="valid: epidural, intraparenchymal"):
        make_phantom(subtypes=["stroke"])


def test_tiny_series_work():
    for n in (1, 2, 3):
        series = make_phantom(seed=2, n_slices=n, size=64)
        assert series.hu.shape == (n, 64, 64) and series.labels.shape == (n, 6)
        assert series.labels[:, 0].any()


@pytest.mark.parametrize("n, size", [(0, 64), (1, 16), (401, 64), (4, 1025), (4, 100_000)])
def test_a_phantom_too_small_or_too_large_for_memory_is_refused_before_allocating(n, size):
    with pytest.raises(ValueError, match="1 to 400 slices, a size of 32 to 1024 pixels"):
        make_phantom(seed=2, n_slices=n, size=size)


def _arc_profile(mask, theta, depth, bins=20):
    """Thickness (max depth, mm) in equal angle bins across the lesion's arc, and the arc (rad)."""
    t, d = theta[mask], depth[mask]
    edges = np.linspace(t.min(), t.max() + 1e-6, bins + 1)
    which = np.digitize(t, edges) - 1
    thick = np.array([d[which == i].max() if (which == i).any() else 0.0 for i in range(bins)])
    near = np.array([d[which == i].min() if (which == i).any() else np.inf for i in range(bins)])
    return thick, near, float(t.max() - t.min())


def test_epidural_is_a_lens_against_the_inner_table_between_two_sutures(debug):
    series, truth = debug
    lesion = next(les for les in truth.lesions if les.subtype == "epidural")
    k = _largest_slice(series.masks["epidural"])
    mask, px = series.masks["epidural"][k], series.pixel_spacing
    lo, hi = lesion.sutures
    assert lo < lesion.theta_center - lesion.theta_half and lesion.theta_center + lesion.theta_half < hi
    theta = truth.theta[k][mask]
    assert theta.min() >= lo and theta.max() <= hi  # never crosses a suture
    thick, near, arc = _arc_profile(mask, truth.theta[k], truth.depth[k])
    assert np.all(near < 1.5 * px)  # touches the inner table along its whole length
    assert thick.max() >= 8.0  # thick ...
    assert int(np.argmax(thick)) in range(5, 15)  # ... in the middle ...
    assert max(thick[0], thick[-1]) < 0.35 * thick.max()  # ... tapering to ~0 at both ends
    assert min(thick[5], thick[14]) > 0.5 * thick.max()  # convex toward the brain (a lens)
    assert np.all(np.isin(truth.tissue[k][mask], (ph.CSF, ph.GM, ph.WM)))  # inside the skull


def test_subdural_is_a_long_thin_crescent_along_the_inner_table(debug):
    series, truth = debug
    k = _largest_slice(series.masks["subdural"])
    mask, px = series.masks["subdural"][k], series.pixel_spacing
    thick, near, arc = _arc_profile(mask, truth.theta[k], truth.depth[k])
    assert math.degrees(arc) > 70  # long ...
    assert thick.max() <= 12.0  # ... and thin
    assert np.all(near < 1.5 * px)  # hugs the inner table
    assert min(thick[4], thick[15]) > 0.6 * thick.max()  # even thickness: concave toward the brain
    # It stays on one side of the falx.
    theta = truth.theta[k][mask]
    assert np.all(np.sign(theta) == np.sign(np.median(theta)))


def test_intraparenchymal_is_inside_the_brain_with_an_oedema_rim(debug):
    series, truth = debug
    k = _largest_slice(series.masks["intraparenchymal"])
    mask = series.masks["intraparenchymal"][k]
    assert np.all(truth.depth[k][mask] > 2.0)
    grown = [mask]
    for _ in range(3):
        g = grown[-1]
        grown.append(g | np.roll(g, 1, 0) | np.roll(g, -1, 0) | np.roll(g, 1, 1) | np.roll(g, -1, 1))
    ring = grown[3] & ~grown[1] & np.isin(truth.tissue[k], (ph.GM, ph.WM, ph.DEEP))  # past the soft edge
    for other in series.masks.values():
        ring &= ~other[k]
    assert 15 <= float(np.median(series.hu[k][ring])) <= 25  # hypodense (oedema) rim around the clot
    assert float(np.median(series.hu[k][ring])) < float(np.median(series.hu[k][_core(truth.tissue[k] == ph.WM)]))


def test_intraventricular_blood_layers_in_the_dependent_ventricles(debug):
    series, truth = debug
    mask = series.masks["intraventricular"]
    vent = truth.tissue == ph.VENT
    assert np.all(vent[mask])  # only inside the ventricles
    for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
        blood_rows = np.nonzero(mask[k])[0]
        clear_rows = np.nonzero(vent[k] & ~mask[k])[0]
        assert clear_rows.max() < blood_rows.min()  # a horizontal fluid level, blood below (posterior)
        assert blood_rows.mean() > np.nonzero(vent[k])[0].mean()


def test_subarachnoid_blood_replaces_csf_in_sulci_and_cisterns(debug):
    series, truth = debug
    mask = series.masks["subarachnoid"]
    assert np.all(truth.tissue[mask] == ph.CSF)
    assert np.all(truth.depth[mask] >= -1e-3)  # intracranial


def test_lesions_paste_into_a_single_slice_and_drop_sub_threshold_tips(debug):
    series, truth = debug
    k = _largest_slice(series.masks["subdural"])
    clean, clean_truth = make_phantom_debug(seed=3, subtypes=[], n_slices=24, size=256)
    np.testing.assert_array_equal(clean_truth.tissue, truth.tissue)
    _, lab, geom = ph._anatomy(clean_truth.head, float(clean_truth.heights[k]), clean.pixel_spacing, 256)
    box = ph._anatomy(clean_truth.head, float(clean_truth.heights[k]), clean.pixel_spacing, 256)[0]
    image = clean.hu[k][box].copy()
    lesion = next(les for les in truth.lesions if les.subtype == "subdural")
    masks = paste_lesions(image, geom, [lesion], float(clean_truth.heights[k]), np.zeros_like(image))
    np.testing.assert_array_equal(masks["subdural"], series.masks["subdural"][k][box])
    assert np.all((image[masks["subdural"]] >= 50) & (image[masks["subdural"]] <= 90))
    assert paste_lesions(clean.hu[k][box].copy(), geom, [lesion], float(clean_truth.heights[k]),
                         np.zeros_like(image), min_pixels=10**6) == {}


def test_fast_atan2_matches_numpy():
    rng = np.random.default_rng(0)
    y, x = rng.normal(size=(2, 10000)).astype(np.float32)
    assert np.abs(fast_atan2(y, x) - np.arctan2(y, x)).max() < 5e-4


# --------------------------------------------------------------------------- DICOM


@pytest.fixture(scope="module")
def small():
    return make_phantom(seed=4, subtypes=["subdural", "intraventricular"], n_slices=10, size=128)


@pytest.mark.parametrize("storage, low, high", [("int16", -32768, 32767), ("uint12", -1024, 3071)])
def test_dicom_round_trip(tmp_path, small, storage, low, high):
    hu = small.hu.copy()
    hu[0, 0, :4] = [-2000, 3500, 5000.4, -1024.6]  # out of range for uint12
    series = ph.PhantomSeries(hu, small.labels, small.masks, small.z, small.pixel_spacing, small.slice_thickness, 4)
    paths = write_phantom_study(series, tmp_path / storage, storage=storage)
    assert [p.name for p in paths] == [f"{i}.dcm" for i in ph.rsna_ids(series)]
    assert all(p.name.startswith("ID_") and len(p.stem) == 12 and p.stem[3:] == p.stem[3:].lower() for p in paths)
    datasets = [pydicom.dcmread(p) for p in paths]
    for k, ds in enumerate(datasets):
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(values, np.clip(np.round(hu[k]), low, high))
        assert ds.InstanceNumber == k + 1 and float(ds.ImagePositionPatient[2]) == pytest.approx(series.z[k])
        assert [float(v) for v in ds.ImagePositionPatient[:2]] == pytest.approx([-127 / 2 * series.pixel_spacing] * 2)
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([series.pixel_spacing] * 2)
        assert float(ds.SliceThickness) == 5.0 and float(ds.SpacingBetweenSlices) == 5.0
        assert (ds.WindowCenter, ds.WindowWidth) == (40, 80) and ds.RescaleType == "HU"
        assert ds.PixelRepresentation == (1 if storage == "int16" else 0)
        assert ds.BitsStored == (16 if storage == "int16" else 12) and ds.BitsAllocated == 16
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
            assert UID(uid).is_valid
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(paths)
    assert len({(ds.StudyInstanceUID, ds.SeriesInstanceUID, str(ds.PatientName)) for ds in datasets}) == 1
    assert np.all(np.diff([float(ds.ImagePositionPatient[2]) for ds in datasets]) > 0)


def test_same_seed_writes_identical_files_and_the_loader_reads_them(tmp_path, small):
    first = write_phantom_study(small, tmp_path / "a")
    again = write_phantom_study(make_phantom(seed=4, subtypes=["subdural", "intraventricular"], n_slices=10, size=128),
                                tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in again]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(first, again))
    assert (tmp_path / "a" / "labels.csv").read_bytes() == (tmp_path / "b" / "labels.csv").read_bytes()
    other = write_phantom_study(make_phantom(seed=5, n_slices=10, size=128), tmp_path / "c")
    assert not {p.name for p in other} & {p.name for p in first}
    assert pydicom.dcmread(other[0]).StudyInstanceUID != pydicom.dcmread(first[0]).StudyInstanceUID
    descriptions = [pydicom.dcmread(p[0]).SeriesDescription for p in (first, other)]
    assert descriptions == ["Phantom seed 4: intraventricular, subdural", "Phantom seed 5: EDH, IPH, IVH, SAH, SDH"]
    loaded = ich_viewer.load(tmp_path / "a").series[0]
    np.testing.assert_array_equal(read_volume(loaded), np.maximum(np.round(small.hu), -1024))
    np.testing.assert_allclose(loaded.z, small.z)


def test_labels_csv_is_rsna_format(tmp_path, small):
    paths = write_phantom_study(small, tmp_path)
    with open(tmp_path / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ID", "Label"] and len(rows) == 1 + 6 * len(paths)
    for i, path in enumerate(paths):
        block = rows[1 + 6 * i: 7 + 6 * i]
        assert [r[0] for r in block] == [f"{path.stem}_{name}" for name in RSNA_ORDER]
        assert [int(r[1]) for r in block] == [int(small.labels[i, CLASSES.index(name)]) for name in RSNA_ORDER]
    assert sum(int(r[1]) for r in rows[1:]) == int(small.labels.sum()) > 0


def test_refuses_foreign_folders_but_replaces_its_own_output(tmp_path):
    tiny = make_phantom(n_slices=2, size=64)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        write_phantom_study(tiny, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    # Files named like RSNA images but not written by the phantom are a user's data too.
    foreign = tmp_path / "rsna"
    write_ct_series(foreign, tiny.hu, z=tiny.z, pixel_spacing=1.0, slice_thickness=5.0,
                    file_names=["ID_012345678.dcm", "ID_abcdef012.dcm"], patient_name="X", patient_id="X",
                    study_uid="1.2.3", series_uid="1.2.3.4", sop_uids=["1.2.3.4.1", "1.2.3.4.2"],
                    series_description="", study_description="", manufacturer="Scanner Inc")
    with pytest.raises(ValueError, match="not empty"):
        write_phantom_study(tiny, foreign)
    assert len(list(foreign.iterdir())) == 2
    with pytest.raises(ValueError, match="not a folder"):
        write_phantom_study(tiny, tmp_path / "notes.txt")
    # A previous phantom output is replaced, leaving no stale slices behind.
    out = tmp_path / "study"
    write_phantom_study(make_phantom(seed=1, n_slices=3, size=64), out)
    paths = write_phantom_study(tiny, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([p.name for p in paths] + ["labels.csv"])
