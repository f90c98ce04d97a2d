"""bench/paired_auc.py's paired patient bootstrap (the README's SimCLR comparison rests on it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from training.metrics import roc_auc

_spec = importlib.util.spec_from_file_location("paired_auc", Path(__file__).resolve().parents[2] / "bench" / "paired_auc.py")
paired_auc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired_auc)


def test_the_paired_difference_is_b_minus_a_over_known_rows_and_shared_noise_cancels():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(40), 10).astype(str)
    labels = rng.integers(0, 2, 400)
    labels[:15] = -1  # unknown rows count for neither run
    a = labels * 0.5 + rng.normal(0, 0.5, 400)
    b = a + labels * 0.3  # b separates better than a on every patient
    difference, low, high = paired_auc.paired_difference(patients, labels, a, b, n_boot=200)
    known = labels >= 0
    assert difference == pytest.approx(roc_auc(labels[known], b[known]) - roc_auc(labels[known], a[known]))
    assert 0 < low <= difference <= high
    assert paired_auc.paired_difference(patients, labels, a, a.copy(), n_boot=50) == (0.0, 0.0, 0.0)
    assert paired_auc.paired_difference(patients, np.full(400, -1), a, b) is None  # nothing known: no AUC
