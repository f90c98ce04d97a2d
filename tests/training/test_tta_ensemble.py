"""bench/tta_ensemble.py's test-time flip (the README's flip table rests on it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from training.config import load_config
from training.model import build_model
from training.train import predict

_spec = importlib.util.spec_from_file_location("tta_ensemble",
                                               Path(__file__).resolve().parents[2] / "bench" / "tta_ensemble.py")
tta_ensemble = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tta_ensemble)


def test_the_flip_average_is_the_mean_over_each_slice_and_its_own_mirror_in_the_rows_order():
    torch.manual_seed(0)
    model = build_model(load_config("phantom_smoke")).eval()
    images = np.random.default_rng(0).normal(30, 40, (6, 48, 48)).astype(np.int16)
    rows = np.array([4, 0, 5, 2])  # unsorted: the answer keeps this order
    mirrored = np.ascontiguousarray(images[..., ::-1])
    expected = (predict(model, images, rows) + predict(model, mirrored, rows)) / 2
    got = tta_ensemble.flip_averaged(model, images, rows)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, predict(model, images, rows))  # the mirror changes an asymmetric slice's answer
    symmetric = np.concatenate([images[..., :24], images[..., :24][..., ::-1]], axis=-1)
    np.testing.assert_allclose(tta_ensemble.flip_averaged(model, symmetric, rows), predict(model, symmetric, rows),
                               rtol=1e-5, atol=1e-6)
