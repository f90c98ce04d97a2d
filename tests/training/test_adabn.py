"""bench/adabn.py's batch-norm re-estimation (the README's AdaBN table rests on it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.config import load_config
from training.model import build_model

_spec = importlib.util.spec_from_file_location("adabn", Path(__file__).resolve().parents[2] / "bench" / "adabn.py")
adabn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adabn)


def test_adapted_statistics_are_the_plain_average_over_the_target_slices_and_the_model_is_left_alone():
    torch.manual_seed(0)
    model = build_model(load_config("phantom_smoke")).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = np.random.default_rng(0).normal(30, 40, (10, 64, 64)).astype(np.int16)
    rows = np.array([7, 1, 3, 5, 9, 0])  # three batches of two below (equal batches: an average of their means), unsorted
    adapted = adabn.adapt_batch_norm(model, images, rows, batch_size=2)

    first_norm = next(m for m in adapted.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():  # what feeds that norm: the preprocessing and the first convolution
        x = adapted.preprocess(torch.from_numpy(images[np.sort(rows)].astype(np.float32))[:, None])
        conv = next(m for m in adapted.modules() if isinstance(m, nn.Conv2d))
        expected = conv(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(first_norm.running_mean, expected, rtol=1e-4, atol=1e-4)
    assert not adapted.training and not first_norm.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # the original keeps its training statistics
    probabilities = adabn.predict(adapted, images, rows)
    assert probabilities.shape == (6, 6) and not np.allclose(probabilities, adabn.predict(model, images, rows))
