"""Threshold presets and operating curves, calibrated on validation patients (written into the card).

The bundled model's come from pooled out-of-fold predictions over every labelled patient of every
source that labels the class, not from one fold (``training.evaluate``).

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
#: Entries of :func:`calibrate`'s result that are not presets.
META_KEYS = ("default", "notes", "rules", "unmet", "calibration")


def operating_curve(y_true_c, y_prob_c, max_points: int = 101) -> dict:
    """Precision, recall, specificity at up to ``max_points`` ascending thresholds in [0, 1].

    Thresholds are score quantiles plus 0 and 1 (deduplicated at 6 decimals), so the curve is dense
    where the scores are. Flag = score >= threshold. Precision with nothing flagged is 1.0 (no false
    alarms, the usual end point of a PR curve); with no positives recall is 0.0 and with no negatives
    specificity is 1.0, so every list stays numeric (the viewer gives no precision where recall is 0).
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


#: Each preset's rule, in the words the card and the viewer show.
PRESET_RULES = {
    "balanced": "best F1 among thresholds with specificity at least 0.80",
    "high_sensitivity": "the highest threshold with recall at least 0.95",
    "precision_0.7": "the lowest threshold with precision at least 0.70",
}
MIN_SPECIFICITY = 0.80
#: Less evidence than this for a class (positive slices, and patients they come from): "not calibrated".
MIN_POSITIVE_SLICES, MIN_POSITIVE_PATIENTS = 20, 5
UNMET = 1.0  # the threshold stored for a class whose rule cannot be met: the viewer flags nothing for it


def calibrate(y_true, y_prob, patients=None, recall_target: float = 0.95, precision_target: float = 0.7) -> dict:
    """The card's presets and what backs them, per class, over the exact candidate thresholds of
    ``precision_recall_curve`` (:data:`PRESET_RULES`):

    - ``balanced``: max F1 among thresholds with specificity >= 0.80; ties go to the higher threshold;
    - ``high_sensitivity``: the highest threshold with recall >= ``recall_target``;
    - ``precision_0.7``: the lowest threshold with precision >= ``precision_target`` (the seed paper's
      Table V operating point).

    A rule the data cannot meet (no positives; precision never reached; no positive found at specificity
    0.80) is not replaced by another preset's threshold: the class gets :data:`UNMET` and a reason in
    ``unmet``, and the viewer says so and flags nothing for it. ``calibration`` marks a class with fewer
    than 20 positive slices or 5 positive patients (``patients``: one id per row; None counts slices
    only) "not calibrated". Result: ``{"balanced": {class: t}, ..., "default": "balanced", "notes": [...],
    "rules": PRESET_RULES, "unmet": {preset: {class: why}}, "calibration": {class: status}}``.
    """
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, float)
    patients = np.asarray(patients) if patients is not None else np.arange(len(y_true))
    presets: dict = {name: {} for name in PRESETS}
    unmet: dict = {name: {} for name in PRESETS}
    calibration, notes = {}, []
    for c, name in enumerate(CLASSES):
        keep = np.asarray(y_true[:, c]) >= 0
        y, p = y_true[keep, c].astype(int), y_prob[keep, c]
        n_pos, n_patients = int(y.sum()), len(set(patients[keep][y == 1].tolist()))
        enough = n_pos >= MIN_POSITIVE_SLICES and n_patients >= MIN_POSITIVE_PATIENTS
        calibration[name] = "calibrated" if enough else "not calibrated"
        if not enough:
            notes.append(f"{name}: not calibrated ({n_pos} positive slices from {n_patients} patients; needs "
                         f"{MIN_POSITIVE_SLICES} from {MIN_POSITIVE_PATIENTS})")
        if n_pos == 0:
            why = "no labelled validation slices" if y.size == 0 else "no positive validation slices"
            for preset in PRESETS:
                presets[preset][name], unmet[preset][name] = UNMET, why
            continue
        precision, recall, thresholds = precision_recall_curve(y, p)
        precision, recall = precision[:-1], recall[:-1]  # the final (1, 0) point has no threshold
        negatives = max(int((y == 0).sum()), 1)
        false_pos = np.array([int(((p >= t) & (y == 0)).sum()) for t in thresholds])
        specific = 1 - false_pos / negatives >= MIN_SPECIFICITY
        f1 = np.where(specific, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        if f1.max() > 0:
            presets["balanced"][name] = _down4(thresholds[np.flatnonzero(f1 == f1.max())[-1]])  # ascending: [-1] highest
        else:
            presets["balanced"][name] = UNMET
            unmet["balanced"][name] = f"no threshold with specificity {MIN_SPECIFICITY:.2f} finds a positive slice"
        presets["high_sensitivity"][name] = _down4(thresholds[recall >= recall_target].max())  # the lowest has recall 1
        precise = thresholds[precision >= precision_target]
        if precise.size:
            presets["precision_0.7"][name] = _down4(precise.min())
        else:
            presets["precision_0.7"][name] = UNMET
            unmet["precision_0.7"][name] = f"never reaches precision {precision_target:.2f} on the validation slices"
    for preset, classes in unmet.items():
        notes += [f"{preset}: {name}: {why}" for name, why in classes.items()]
    presets.update(default="balanced", notes=notes, rules=dict(PRESET_RULES),
                   unmet={k: v for k, v in unmet.items() if v}, calibration=calibration)
    return presets
