"""Partial labels: an unknown label (-1) adds no loss and never counts as a negative in a metric, curve or threshold.

Every check compares against hand-computed values or against the same computation on the known rows only.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ich_viewer.core.contract import CLASSES
from training.crossval import cross_validation_markdown, read_predictions
from training.data.base import UNKNOWN, SliceRecord, labels_array, partial_labels
from training.data.cache import _read_index, _write_index
from training.data.dataset import sample_weights
from training.evaluate import _write_predictions
from training.metrics import (ap_or_none, auc_or_none, bootstrap_ci, class_metrics, evaluate, per_class_auc, roc_auc,
                              study_level, weighted_log_loss)
from training.report import write_report
from training.thresholds import calibrate, curves, operating_curve
from training.train import WeightedBCE

W = [2, 1, 1, 1, 1, 1]


# --------------------------------------------------------------------------- loss


def test_masked_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0, -1.0, 0.0, 0.0, 0.0], [1.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], [0.0, -1, -1, -1, -1, -1]])
    # Row 0, all known: 2 ln2 + ln(1+e^2) + ln(1+e^-1) + 3 ln2 over weight 7; row 1 only "any": 2 ln(1+e) over 2.
    row0 = 2 * np.log(2) + np.log(1 + np.e**2) + np.log(1 + np.e**-1) + 3 * np.log(2)
    expected = (row0 + 2 * np.log(1 + np.e)) / (7 + 2)
    assert float(WeightedBCE(W)(logits, targets)) == pytest.approx(expected, rel=1e-6)


def test_a_class_unknown_on_some_rows_is_the_loss_of_its_known_rows_only():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 1, generator=rng)
    targets = (torch.rand(10, 1, generator=rng) < 0.5).float()
    unknown = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 1, 0], dtype=torch.bool)[:, None]
    partial = torch.where(unknown, torch.tensor(-1.0), targets)
    known_only = F.binary_cross_entropy_with_logits(logits[~unknown], targets[~unknown])
    assert float(WeightedBCE([1.0])(logits, partial)) == pytest.approx(float(known_only), rel=1e-6)
    # Six classes, whole rows unknown: the loss of the other rows.
    logits6, targets6 = torch.randn(8, 6, generator=rng), (torch.rand(8, 6, generator=rng) < 0.3).float()
    partial6 = targets6.clone()
    partial6[[2, 5]] = -1
    keep = [0, 1, 3, 4, 6, 7]
    assert float(WeightedBCE(W)(logits6, partial6)) == pytest.approx(float(WeightedBCE(W)(logits6[keep],
                                                                                          targets6[keep])), rel=1e-6)


def test_unknown_entries_change_nothing_and_get_no_gradient():
    rng = torch.Generator().manual_seed(1)
    targets = (torch.rand(16, 6, generator=rng) < 0.3).float()
    targets[:, 3] = -1  # a whole batch column unknown
    targets[::2, 1:] = -1  # a source that labels only "any"
    logits = torch.randn(16, 6, generator=rng, requires_grad=True)
    loss = WeightedBCE(W, [3, 1, 1, 1, 1, 1])(logits, targets)
    loss.backward()
    assert torch.all(logits.grad[targets < 0] == 0) and torch.all(logits.grad[targets >= 0] != 0)
    moved = torch.where(targets < 0, torch.randn(16, 6, generator=rng) * 10, logits.detach())
    assert float(WeightedBCE(W, [3, 1, 1, 1, 1, 1])(moved, targets)) == pytest.approx(float(loss.detach()), rel=1e-6)
    # The all-unknown column adds nothing: the same as giving that class no weight.
    filled = targets.clone()
    filled[:, 3] = 0
    assert float(loss.detach()) == pytest.approx(float(WeightedBCE([2, 1, 1, 0, 1, 1], [3, 1, 1, 1, 1, 1])(logits, filled)),
                                        rel=1e-6)
    # An all-unknown batch is 0 with a zero gradient, not NaN.
    empty = torch.zeros(4, 6, requires_grad=True)
    zero = WeightedBCE(W)(empty, torch.full((4, 6), -1.0))
    zero.backward()
    assert float(zero) == 0.0 and torch.all(empty.grad == 0)


def test_with_every_label_known_the_loss_is_bit_identical_to_the_unmasked_formula():
    rng = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(32, 6, generator=rng), (torch.rand(32, 6, generator=rng) < 0.3).float()
    for weights, pos_weight in ((W, None), ([2, 2, 1, 1, 1, 1], [3, 1, 1, 1, 1, 2])):
        w = torch.tensor(weights, dtype=torch.float32)
        pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32)
        bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw, reduction="none")
        before = (bce * w).sum(1).mean() / w.sum()  # the formula before partial labels
        assert torch.equal(WeightedBCE(weights, pos_weight)(logits, targets), before)


# --------------------------------------------------------------------------- metrics, curves, thresholds


def partial_data(seed: int = 0, n: int = 120):
    """Labels, probabilities, patients; and the same labels with about a third of each column unknown."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 6)) < 0.3).astype(np.int8)
    p = np.clip(0.35 * y + 0.65 * rng.random((n, 6)), 0, 1)
    unknown = rng.random((n, 6)) < 0.35
    unknown[: n // 4, 1:] = True  # a source that labels only "any"
    return y, p, np.where(unknown, UNKNOWN, y).astype(np.int8), [f"p{i // 6}" for i in range(n)]


def test_an_unknown_label_changes_no_auc_ap_or_class_metric():
    y, p, partial, patients = partial_data()
    for c in range(6):
        keep = partial[:, c] >= 0
        yk, pk = y[keep, c], p[keep, c]
        assert roc_auc(partial[:, c], p[:, c]) == roc_auc(yk, pk)
        assert auc_or_none(partial[:, c], p[:, c]) == pytest.approx(roc_auc(yk, pk), abs=1e-12)
        assert ap_or_none(partial[:, c], p[:, c]) == ap_or_none(yk, pk)
        assert class_metrics(partial[:, c], p[:, c], 0.5) == class_metrics(yk, pk, 0.5)
        assert class_metrics(partial[:, c], p[:, c], 0.5)["n"] == keep.sum()
        groups = np.asarray(patients)
        assert bootstrap_ci(patients, partial[:, c], p[:, c], auc_or_none, 100) == \
            bootstrap_ci(list(groups[keep]), yk, pk, auc_or_none, 100)
        assert operating_curve(partial[:, c], p[:, c]) == operating_curve(yk, pk)
    assert per_class_auc(partial, p) == {name: roc_auc(partial[:, c], p[:, c]) for c, name in enumerate(CLASSES)}
    # Were the unknowns read as negatives, the AUC would change: the test can tell the difference.
    assert roc_auc(np.maximum(partial[:, 1], 0), p[:, 1]) != roc_auc(partial[:, 1], p[:, 1])


def test_thresholds_and_curves_use_the_known_rows_of_each_class():
    y, p, partial, _ = partial_data(1)
    presets, operating = calibrate(partial, p), curves(partial, p)
    for c, name in enumerate(CLASSES):
        keep = partial[:, c] >= 0
        alone = np.zeros((keep.sum(), 6), np.int8)
        alone[:, c] = y[keep, c]
        prob = np.zeros((keep.sum(), 6))
        prob[:, c] = p[keep, c]
        reference = calibrate(alone, prob)
        for preset in ("balanced", "high_sensitivity", "precision_0.7"):
            assert presets[preset][name] == reference[preset][name]
        assert operating[name] == operating_curve(y[keep, c], p[keep, c])
    unlabelled = partial.copy()
    unlabelled[:, 4] = UNKNOWN
    assert calibrate(unlabelled, p)["unmet"]["balanced"]["subarachnoid"] == "no labelled validation slices"


def test_log_loss_by_hand_with_unknown_labels():
    y = np.array([[1, 0, 0, 0, 0, 0], [0, -1, -1, -1, -1, -1], [-1] * 6])
    p = np.full((3, 6), 0.5)
    p[0, 0], p[1, 0], p[1, 1:] = 0.9, 0.2, 0.01  # row 1's subtypes are unknown: their awful scores count for nothing
    # Row 0: (2 * -ln 0.9 + 5 ln 2) / 7; row 1: only any, -ln 0.8; row 2: nothing known, left out.
    expected = ((2 * -np.log(0.9) + 5 * np.log(2)) / 7 + -np.log(0.8)) / 2
    assert weighted_log_loss(y, p) == pytest.approx(expected, abs=1e-9)
    assert np.isnan(weighted_log_loss([[-1] * 6], [[0.5] * 6]))
    y_all, p_all, _, _ = partial_data(2)
    w = np.array(W, float)
    bce = -(y_all * np.log(p_all.clip(1e-7, 1 - 1e-7)) + (1 - y_all) * np.log((1 - p_all).clip(1e-7, 1 - 1e-7)))
    assert weighted_log_loss(y_all, p_all) == float(((bce * w).sum(1) / w.sum()).mean())  # the formula before


def test_evaluation_and_study_level_skip_unknown_entries():
    y, p, partial, patients = partial_data(3)
    studies = list(patients)
    partial[np.asarray(patients) == "p0", 2] = UNKNOWN  # a study whose class 2 is unknown on every slice
    keys, study_true, _ = study_level(studies, partial, p)
    assert study_true[keys.index("p0"), 2] == UNKNOWN
    thresholds = dict.fromkeys(CLASSES, 0.5)
    result = evaluate(partial, p, patients, studies, thresholds, n_boot=50)
    for c, name in enumerate(CLASSES):
        keep = partial[:, c] >= 0
        assert result["slice"][name]["n"] == keep.sum()
        assert result["slice"][name]["auc"] == roc_auc(y[keep, c], p[keep, c])
        assert result["study"][name]["n"] == (study_true[:, c] >= 0).sum()
    assert result["n_slices"] == len(y) and result["log_loss"] == weighted_log_loss(partial, p)


def test_report_and_cross_validation_count_only_known_positives(tmp_path):
    y, p, partial, patients = partial_data(4, n=96)
    write_report(tmp_path / "report", "partial", evaluate(partial, p, patients, patients, dict.fromkeys(CLASSES, 0.5),
                                                          n_boot=20), partial, p, calibrate(partial, p), curves(partial, p))
    runs = {}
    for fold, half in enumerate((slice(0, 48), slice(48, 96))):
        records = [SimpleNamespace(key=f"{i}", patient=patients[i], study=patients[i], index=i)
                   for i in range(96)[half]]
        (tmp_path / f"f{fold}" / "eval").mkdir(parents=True)
        _write_predictions(tmp_path / f"f{fold}" / "eval" / "predictions.csv", records, partial[half], p[half])
        runs[f"f{fold}"] = tmp_path / f"f{fold}"
    _, _, labels, _ = read_predictions(runs["f0"])
    assert np.array_equal(labels, partial[:48])  # -1 survives the round trip (it was read as uint8 255)
    pooled = next(line for line in cross_validation_markdown(runs, n_boot=20).splitlines() if "pooled" in line)
    cells = [cell.strip() for cell in pooled.strip("|").split("|")][2:8]
    for c, cell in enumerate(cells):
        keep = partial[:, c] >= 0
        assert cell.startswith(f"{roc_auc(y[keep, c], p[keep, c]):.3f}") and cell.endswith(f"({(partial[:, c] == 1).sum()})")


# --------------------------------------------------------------------------- records, cache, sampling


def test_partial_labels_survive_the_cache_index(tmp_path):
    assert partial_labels({"any": 1, "intraparenchymal": 1}) == (1, -1, 1, -1, -1, -1)
    with pytest.raises(ValueError, match="unknown class"):
        partial_labels({"hemorrhage": 1})
    records = [SliceRecord("a/0", "a", "a", 0, (0, -1, 0, -1, -1, -1), "x"),
               SliceRecord("b/0", "b", "b", 0, (1, 0, 0, 0, 1, 0), "y"), SliceRecord("c/0", "c", "c", 0, None, "z")]
    _write_index(tmp_path / "index.csv", records)
    assert [r.labels for r in _read_index(tmp_path / "index.csv")] == [r.labels for r in records]
    assert labels_array(records).tolist() == [[0, -1, 0, -1, -1, -1], [1, 0, 0, 0, 1, 0], [-1] * 6]


def test_balanced_sampling_counts_unknown_labels_as_neither_positive_nor_negative():
    labels = np.zeros((40, 6), np.int8)
    labels[:4, [0, 2]] = 1
    before = sample_weights(labels, 1.0)
    partial = labels.copy()
    partial[:, [1, 3, 4, 5]] = UNKNOWN  # the same slices from a source that labels only any and intraparenchymal
    assert np.array_equal(sample_weights(partial, 1.0), before)
