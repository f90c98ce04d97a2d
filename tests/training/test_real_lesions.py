"""Synthetic blood on real anatomy: the slice geometry, the painted lesions, and the split that keeps them apart."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ich_viewer.core.lesions import BLOOD_HU
from ich_viewer.core.phantom import VENT, make_phantom_debug, min_lesion_pixels
from training.config import load_config
from training.data.base import SliceRecord, labels_array
from training.data.cache import Cache
from training.data.real_lesions import RealLesionSource, real_slice_geometry
from training.train import split_rows


def test_geometry_of_a_phantom_slice_seen_through_the_png_window():
    """On a phantom slice clipped to CT-ICH's -20..100 HU, the estimator finds the phantom's own
    intracranial space and ventricles (the painters' truth)."""
    series, truth = make_phantom_debug(seed=4, subtypes=(), n_slices=24, size=256)
    k = int(np.argmin(np.abs(truth.heights - 6.0)))  # a level through the lateral ventricles
    hu = np.clip(series.hu[k], -20, 100)
    geom = real_slice_geometry(hu, series.pixel_spacing)
    assert geom is not None
    inside_true, inside = truth.depth[k] >= 0, geom.depth >= 0
    assert (inside_true & inside).sum() / (inside_true | inside).sum() > 0.9
    ventricles_true = truth.tissue[k] == VENT
    assert (ventricles_true & geom.ventricles).sum() / ventricles_true.sum() > 0.6
    assert not (geom.ventricles & ~inside).any() and not (geom.csf & geom.ventricles).any()


def test_slices_without_a_closed_skull_are_not_hosts():
    assert real_slice_geometry(np.full((256, 256), -20.0, np.float32)) is None  # air only
    series, _ = make_phantom_debug(seed=4, subtypes=(), n_slices=24, size=256)
    assert real_slice_geometry(np.clip(series.hu[-1], -20, 100), series.pixel_spacing) is None  # the vertex


@pytest.fixture(scope="module")
def lesion_source(ctich_dir):
    return RealLesionSource(str(ctich_dir), every=40, seed=2)


def test_painted_real_slices_are_labelled_by_their_masks(lesion_source):
    records = lesion_source.records()
    assert len(records) >= 10
    painted = {name for r in records for name, flag in zip(("any", "epidural", "intraparenchymal",
               "intraventricular", "subarachnoid", "subdural"), r.labels) if flag} - {"any"}
    assert painted == {"intraventricular", "subarachnoid", "subdural"}
    hosts = {r.key: r for r in lesion_source.host.records()}
    for record in records[:12]:
        host = hosts[record.extra["host"]]
        assert host.patient == record.patient and not any(host.labels)  # a negative slice of the same patient
        hu, masks = lesion_source.read_hu(record), lesion_source.read_mask(record)
        labelled = {c for c, flag in zip(("epidural", "intraparenchymal", "intraventricular", "subarachnoid",
                                          "subdural"), record.labels[1:]) if flag}
        assert set(masks) == labelled and record.labels[0] == 1
        original = lesion_source.host.read_hu(host)
        for mask in masks.values():
            assert mask.sum() >= min_lesion_pixels(230 / hu.shape[1])
            assert BLOOD_HU[0] <= hu[mask].min() and hu[mask].max() <= BLOOD_HU[1]
        near = np.zeros_like(hu, bool)
        for mask in masks.values():  # the mask and its 1-pixel soft edge (no oedema: no parenchymal bleed)
            near |= ndi.binary_dilation(mask, np.ones((3, 3), bool))
        np.testing.assert_array_equal(hu[~near], original[~near])  # the rest of the anatomy is untouched


def test_the_painting_is_deterministic_by_seed(lesion_source, ctich_dir):
    again = RealLesionSource(str(ctich_dir), every=40, seed=2)
    first = lesion_source.records()[0]
    assert [r.key for r in again.records()] == [r.key for r in lesion_source.records()]
    np.testing.assert_array_equal(again.read_hu(first), lesion_source.read_hu(first))
    other = RealLesionSource(str(ctich_dir), every=40, seed=3)
    assert [r.labels for r in other.records()] != [r.labels for r in lesion_source.records()] or \
        not np.array_equal(other.read_hu(first), lesion_source.read_hu(first))


def test_synthetic_slices_of_validating_patients_never_train():
    """A train-only row painted on a validation patient's slice would leak that patient's anatomy."""
    def record(key, patient, source, positive):
        return SliceRecord(key, patient, patient, 0, (positive,) + (0,) * 5, source)

    real = [record(f"ctich/{p}/{i}", f"p{p}", "ctich", int(i == 0)) for p in range(10) for i in range(4)]
    synthetic = [record(f"ctich_lesions/{p}/1", f"p{p}", "ctich_lesions", 1) for p in range(10)]
    records = real + synthetic
    cache = Cache(None, records, labels_array(records), np.zeros((len(records), 1, 1), np.int16), {})
    config = load_config("ctich_resnet18_lesions", ["split.folds=5", "split.fold=1"])
    train_rows, val_rows = split_rows(cache, config)
    validating = {records[i].patient for i in val_rows}
    assert validating and all(records[i].source == "ctich" for i in val_rows)
    trained_synthetic = {records[i].patient for i in train_rows if records[i].source == "ctich_lesions"}
    assert trained_synthetic == {f"p{p}" for p in range(10)} - validating


def test_phe_sichs_negative_slices_host_every_subtype_with_all_six_labels_known(phe_sich_dir):
    subtypes = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    source = RealLesionSource(str(phe_sich_dir), subtypes=subtypes, every=30, seed=7, host="phe_sich",
                              name="phe_sich_lesions")
    records = source.records()
    labels = labels_array(records)
    assert len(records) >= 15 and (labels >= 0).all()  # PHE-SICH leaves four classes unknown; a painted slice none
    assert set(np.flatnonzero(labels[:, 1:].any(0))) == set(range(5))  # every subtype painted somewhere
    hosts = {r.key: r for r in source.host.records()}
    for record in records[:6]:
        host = hosts[record.extra["host"]]
        assert host.source == "phe_sich" and host.labels[0] == 0 and host.patient == record.patient
        assert record.key.startswith("phe_sich_lesions/") and record.source == "phe_sich_lesions"
        hu, original, masks = source.read_hu(record), source.host.read_hu(host), source.read_mask(record)
        painted = np.logical_or.reduce(list(masks.values()))
        assert len(masks) == 1 and (hu[painted] != original[painted]).mean() > 0.5  # one lesion, painted in
    assert source.hu_range == source.host.hu_range  # the painted slice keeps its host's export
    assert source.export_window_scale == source.host.export_window_scale  # and its window uncertainty
    with pytest.raises(ValueError, match="host must be one of"):
        RealLesionSource(str(phe_sich_dir), host="rsna")
    # subtype_labels=False: the same painted slices say only "blood here"; their subtype is unknown
    blood_only = RealLesionSource(str(phe_sich_dir), subtypes=subtypes, every=30, seed=7, host="phe_sich",
                                  name="phe_sich_lesions", subtype_labels=False)
    unlabelled = labels_array(blood_only.records())
    assert [r.key for r in blood_only.records()] == [r.key for r in records]
    assert (unlabelled[:, 0] == 1).all() and (unlabelled[:, 1:] == -1).all()
