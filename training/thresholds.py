"""Threshold presets and operating curves, calibrated on validation patients (written into the card)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve

from training.data.base import CLASSES

PRESETS = ("balanced", "high_sensitivity", "precision_0.7")


def operating_curve(y_true_c, y_prob_c, max_points: int = 101) -> dict:
    """Precision, recall, specificity at up to ``max_points`` thresholds (ascending) spanning the scores.

    Thresholds are score quantiles plus 0 and 1, so the curve is small but dense where scores are.
    Precision with nothing flagged is 1.0 (no false alarms), the usual end point of a PR curve.
    """
    y = np.asarray(y_true_c).astype(bool)
    p = np.asarray(y_prob_c, float)
    grid = np.unique(np.round(np.concatenate([[0.0, 1.0], np.quantile(p, np.linspace(0, 1, max_points - 2))]), 6))
    flags = p[None, :] >= grid[:, None]
    tp = (flags & y).sum(1)
    fp = (flags & ~y).sum(1)
    positives, negatives = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {"thresholds": grid.round(6).tolist(), "precision": precision.round(4).tolist(),
            "recall": (tp / positives).round(4).tolist(), "specificity": (1 - fp / negatives).round(4).tolist()}


def curves(y_true, y_prob, max_points: int = 101) -> dict[str, dict]:
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    return {name: operating_curve(y_true[:, c], y_prob[:, c], max_points) for c, name in enumerate(CLASSES)}


def read_curve(curve: dict, threshold: float) -> dict[str, float]:
    """Precision/recall/specificity at ``threshold``, linearly interpolated between curve points."""
    t = curve["thresholds"]
    return {k: float(np.interp(threshold, t, curve[k])) for k in ("precision", "recall", "specificity")}


def calibrate(y_true, y_prob, recall_target: float = 0.95, precision_target: float = 0.7) -> dict:
    """The card's presets: ``balanced`` (max F1, the seeds' grid search made exact), ``high_sensitivity``
    (the highest threshold with recall >= 0.95) and ``precision_0.7`` (the lowest threshold with
    precision >= 0.7, the seed paper's Table V operating point)."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, float)
    presets: dict = {name: {} for name in PRESETS}
    notes = []
    for c, name in enumerate(CLASSES):
        y, p = y_true[:, c], y_prob[:, c]
        if y.sum() == 0:
            for preset in PRESETS:
                presets[preset][name] = 0.5
            notes.append(f"{name}: no positive validation slices; all presets use 0.5")
            continue
        precision, recall, thresholds = precision_recall_curve(y, p)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = np.flatnonzero(f1 == f1.max())[-1]  # ties: the higher threshold, fewer false alarms
        balanced = float(thresholds[best])
        sensitive = thresholds[recall >= recall_target]
        precise = thresholds[precision >= precision_target]
        presets["balanced"][name] = round(balanced, 4)
        presets["high_sensitivity"][name] = round(float(sensitive.max()), 4)
        if precise.size:
            presets["precision_0.7"][name] = round(float(precise.min()), 4)
        else:
            presets["precision_0.7"][name] = round(balanced, 4)
            notes.append(f"precision_0.7: {name} never reaches precision {precision_target}; uses balanced")
    presets["default"] = "balanced"
    presets["notes"] = notes
    return presets
