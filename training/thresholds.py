"""Threshold presets and operating curves, calibrated on validation patients (written into the card).

The viewer reads precision/recall/specificity off the stored curve for any threshold the user picks,
so the curve must be small (it lives in the card JSON) yet span [0, 1]. Unknown labels (below 0: a class
the slice's source does not label) are left out per class, like every metric.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve

from ich_viewer.core.contract import CLASSES
from training.metrics import known

PRESETS = ("balanced", "high_sensitivity", "precision_0.7")


def operating_curve(y_true_c, y_prob_c, max_points: int = 101) -> dict:
    """Precision, recall, specificity at up to ``max_points`` ascending thresholds in [0, 1].

    Thresholds are score quantiles plus 0 and 1 (deduplicated at 6 decimals), so the curve is dense
    where the scores are. Flag = score >= threshold. Precision with nothing flagged is 1.0 (no false
    alarms, the usual end point of a PR curve); with no positives recall is 0.0 and with no negatives
    specificity is 1.0, so every list stays numeric for interpolation.
    """
    y, p = known(y_true_c, y_prob_c)
    y, p = y.astype(bool), p.astype(float)
    quantiles = np.quantile(p, np.linspace(0, 1, max(max_points - 2, 1))) if p.size else np.empty(0)
    grid = np.unique(np.clip(np.round(np.concatenate([[0.0, 1.0], quantiles]), 6), 0.0, 1.0))
    flags = p[None, :] >= grid[:, None]
    tp = (flags & y).sum(1)
    fp = (flags & ~y).sum(1)
    positives, negatives = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {"thresholds": grid.tolist(), "precision": precision.round(4).tolist(),
            "recall": (tp / positives).round(4).tolist(), "specificity": (1 - fp / negatives).round(4).tolist()}


def curves(y_true, y_prob, max_points: int = 101) -> dict[str, dict]:
    """One operating curve per class, keyed by class name."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    return {name: operating_curve(y_true[:, c], y_prob[:, c], max_points) for c, name in enumerate(CLASSES)}


def _down4(t: float) -> float:
    """Round down to 4 decimals: every slice flagged at the exact threshold stays flagged, so a recall
    target still holds after rounding (rounding to nearest could lift it above a positive's score)."""
    return round(float(np.floor(t * 1e4 + 1e-6) / 1e4), 4)


def calibrate(y_true, y_prob, recall_target: float = 0.95, precision_target: float = 0.7) -> dict:
    """The card's presets, per class, over the exact candidate thresholds of ``precision_recall_curve``:

    - ``balanced``: max F1; ties go to the higher threshold (fewer false alarms for the same F1);
    - ``high_sensitivity``: the highest threshold with recall >= ``recall_target``;
    - ``precision_0.7``: the lowest threshold with precision >= ``precision_target`` (the seed paper's
      Table V operating point), falling back to ``balanced`` with a note if never reached.

    A class without positives (or without known labels) gets 0.5 in every preset and a note. Result:
    ``{"balanced": {class: t}, "high_sensitivity": {...}, "precision_0.7": {...}, "default": "balanced",
    "notes": [...]}``.
    """
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, float)
    presets: dict = {name: {} for name in PRESETS}
    notes: list[str] = []
    for c, name in enumerate(CLASSES):
        y, p = known(y_true[:, c], y_prob[:, c])
        if y.sum() == 0:
            for preset in PRESETS:
                presets[preset][name] = 0.5
            what = "labelled" if y.size == 0 else "positive"
            notes.append(f"{name}: no {what} validation slices; all presets use 0.5")
            continue
        precision, recall, thresholds = precision_recall_curve(y, p)
        precision, recall = precision[:-1], recall[:-1]  # the final (1, 0) point has no threshold
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        balanced = float(thresholds[np.flatnonzero(f1 == f1.max())[-1]])  # thresholds ascend: [-1] is highest
        sensitive = thresholds[recall >= recall_target]  # never empty: the lowest threshold has recall 1
        precise = thresholds[precision >= precision_target]
        presets["balanced"][name] = _down4(balanced)
        presets["high_sensitivity"][name] = _down4(sensitive.max())
        if precise.size:
            presets["precision_0.7"][name] = _down4(precise.min())
        else:
            presets["precision_0.7"][name] = _down4(balanced)
            notes.append(f"precision_0.7: {name} never reaches precision {precision_target}; uses balanced")
    presets["default"] = "balanced"
    presets["notes"] = notes
    return presets
