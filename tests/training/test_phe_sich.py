"""PHE-SICH-CT-IDS, the second hospital, on the real data (skipped where ../shared/data lacks it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from ich_viewer.core.contract import CLASSES
from training.config import load_config
from training.data.base import UNKNOWN, labels_array
from training.data.cache import prepare
from training.data.ctich import CtichPngSource
from training.data.phe_sich import PHE_SICH_LABELLED, PHE_SICH_WINDOW, PheSichSource
from training.data.sources import build_source
from training.splits import patient_folds
from training.train import split_rows

LABELLED = [CLASSES.index(c) for c in PHE_SICH_LABELLED]
UNLABELLED = [k for k in range(len(CLASSES)) if k not in LABELLED]


@pytest.fixture(scope="module")
def phe_sich(phe_sich_dir):
    source = build_source({"kind": "phe_sich", "root": str(phe_sich_dir)})
    return source, source.records()


def test_counts_and_patients_match_the_dataset_description(phe_sich):
    source, records = phe_sich
    assert isinstance(source, PheSichSource) and source.classes == ("any", "intraparenchymal")
    assert len(records) == 3446 and len({r.key for r in records}) == 3446
    assert len({r.patient for r in records}) == 118 and {r.patient for r in records} == {r.study for r in records}
    first = records[0]
    assert (first.key, first.patient, first.index) == ("phe_sich/0001/0", "PHE_SICH_0001", 0)
    assert Path(first.extra["image"]).is_file()


def test_only_any_and_intraparenchymal_are_labelled_the_rest_is_unknown(phe_sich):
    _, records = phe_sich
    labels = labels_array(records)
    assert np.all(labels[:, UNLABELLED] == UNKNOWN)
    assert set(np.unique(labels[:, LABELLED])) == {0, 1}
    assert (labels[:, LABELLED] == 1).sum(0).tolist() == [712, 712]  # every boxed hematoma is intraparenchymal


def test_hu_under_the_assumed_window_is_plausible_brain(phe_sich):
    """Intracranial soft tissue (inside the saturated skull) has a median of 20-45 HU on mid-level slices."""
    source, records = phe_sich
    assert PHE_SICH_WINDOW == (40.0, 120.0) and source.hu_range == (-20.0, 100.0)
    by_patient: dict[str, list] = {}
    for r in records:
        by_patient.setdefault(r.patient, []).append(r)
    medians, taller = [], []
    for patient in sorted(by_patient)[::8]:  # 15 patients
        slices = by_patient[patient]
        hu = source.read_hu(slices[len(slices) // 2])
        assert hu.dtype == np.float32 and hu.shape == (256, 256)
        assert hu.min() == -20.0 and hu.max() == 100.0  # the window's clipped ends
        bone = ndimage.binary_closing(hu >= 99, iterations=2)
        inside = ndimage.binary_fill_holes(bone) & ~bone & (hu > -20)
        if inside.sum() > 5000:  # a skull open on this slice (one patient) encloses nothing
            medians.append(float(np.median(hu[inside])))
        head, _ = ndimage.label(hu > -20)
        rows, cols = np.nonzero(head == np.argmax(np.bincount(head.ravel())[1:]) + 1)
        taller.append(np.ptp(rows) > np.ptp(cols))
    assert len(medians) >= 12 and all(20 <= m <= 45 for m in medians), medians
    assert sum(taller) >= 12  # already in display orientation: heads are taller than wide, no rotation applied


def test_patient_level_folds_never_split_a_patient_even_beside_ctich(phe_sich, ctich_dir):
    _, records = phe_sich
    records = records + CtichPngSource(ctich_dir).records()
    patients = [r.patient for r in records]
    fold_of = patient_folds(patients, labels_array(records)[:, 0], 5, 0)
    folds_per_patient: dict[str, set] = {}
    for patient, fold in zip(patients, fold_of):
        folds_per_patient.setdefault(patient, set()).add(int(fold))
    assert len(folds_per_patient) == 118 + 75 and all(len(f) == 1 for f in folds_per_patient.values())


def test_the_cache_keeps_the_unknown_labels_and_splits_by_patient(phe_sich_dir, tmp_path):
    config = load_config("phantom_smoke", [f'out="{tmp_path}"', "model.size=32", "data.workers=2",
                                           f'data.sources=[{{kind="phe_sich", root="{phe_sich_dir}"}}]'])
    cache = prepare(config, progress=False)
    assert cache.labels.shape == (3446, 6) and np.all(cache.labels[:, UNLABELLED] == UNKNOWN)
    assert cache.meta["hu_range"] == [[-20.0, 100.0]]
    train_rows, val_rows = split_rows(cache, config)
    assert len(train_rows) + len(val_rows) == 3446  # partially labelled slices are labelled slices
    assert not {cache.records[i].patient for i in train_rows} & {cache.records[i].patient for i in val_rows}
