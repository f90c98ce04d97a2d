"""Per-class metrics at slice and study level, with bootstrap intervals over patients.

scikit-learn computes the standard metrics; what is ours is the RSNA weighted log loss, the
study-level max and resampling whole patients (slices of one patient are not independent).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from training.data.base import CLASSES

RSNA_WEIGHTS = (2, 1, 1, 1, 1, 1)  # the Kaggle metric weights "any" twice


def weighted_log_loss(y_true, y_prob, weights: Sequence[float] = RSNA_WEIGHTS) -> float:
    """RSNA 2019 metric: per slice the weighted mean of the six BCEs, then the mean over slices."""
    y = np.asarray(y_true, float)
    p = np.clip(np.asarray(y_prob, float), 1e-7, 1 - 1e-7)
    w = np.asarray(weights, float)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(((bce * w).sum(1) / w.sum()).mean())


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def auc_or_none(y_true, y_prob) -> float | None:
    y = np.asarray(y_true)
    return float(roc_auc_score(y, y_prob)) if 0 < y.sum() < len(y) else None


def ap_or_none(y_true, y_prob) -> float | None:
    return float(average_precision_score(y_true, y_prob)) if np.asarray(y_true).sum() > 0 else None


def class_metrics(y_true_c, y_prob_c, threshold: float) -> dict:
    """Counts and rates at ``threshold`` (flag = probability >= threshold), AUC and AP.

    Undefined rates (0/0: no flags, no positives, no negatives) are None, not 0.
    """
    y = np.asarray(y_true_c).astype(bool)
    flag = np.asarray(y_prob_c) >= threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    fn, tn = int((~flag & y).sum()), int((~flag & ~y).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {"n": int(y.size), "n_pos": int(y.sum()), "threshold": float(threshold),
            "auc": auc_or_none(y, y_prob_c), "ap": ap_or_none(y, y_prob_c),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": precision, "recall": recall,
            "specificity": _ratio(tn, tn + fp), "f1": f1}


def study_level(study_ids: Sequence[str], y_true, y_prob):
    """Max over each study's slices (labels and probabilities), studies in first-appearance order."""
    ids, inverse = np.unique(np.asarray(study_ids), return_index=False, return_inverse=True)
    first_seen = np.argsort([np.flatnonzero(inverse == k)[0] for k in range(len(ids))])
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    true = np.zeros((len(ids), y_true.shape[1]), y_true.dtype)
    prob = np.zeros((len(ids), y_prob.shape[1]), y_prob.dtype)
    np.maximum.at(true, inverse, y_true)
    np.maximum.at(prob, inverse, y_prob)
    return [str(ids[k]) for k in first_seen], true[first_seen], prob[first_seen]


def bootstrap_ci(groups: Sequence[str], y_true_c, y_prob_c, metric: Callable, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05):
    """Percentile interval of ``metric`` over resamples of whole groups (patients) with replacement."""
    groups = np.asarray(groups)
    y, p = np.asarray(y_true_c), np.asarray(y_prob_c)
    names, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = np.concatenate([members[g] for g in rng.integers(0, len(names), len(names))])
        try:
            value = metric(y[rows], p[rows])
        except ValueError:
            value = None
        if value is not None:
            values.append(value)
    if len(values) < n_boot / 2:
        return None
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]


def evaluate(y_true, y_prob, patients: Sequence[str], studies: Sequence[str], thresholds: dict[str, float],
             n_boot: int = 1000, seed: int = 0) -> dict:
    """The JSON summary behind the report and the model card."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, float)
    if (y_true < 0).any():
        raise ValueError("unlabelled rows (-1) cannot be evaluated")
    study_ids, study_true, study_prob = study_level(studies, y_true, y_prob)
    patient_of_study = dict(zip(studies, patients))
    study_patients = [patient_of_study[s] for s in study_ids]
    result = {"n_slices": int(len(y_true)), "n_patients": len(set(patients)), "n_studies": len(study_ids),
              "log_loss": weighted_log_loss(y_true, y_prob), "slice": {}, "study": {}}
    for c, name in enumerate(CLASSES):
        t = thresholds[name]
        row = class_metrics(y_true[:, c], y_prob[:, c], t)
        row["auc_ci"] = bootstrap_ci(patients, y_true[:, c], y_prob[:, c], auc_or_none, n_boot, seed)
        row["ap_ci"] = bootstrap_ci(patients, y_true[:, c], y_prob[:, c], ap_or_none, n_boot, seed)
        result["slice"][name] = row
        study_row = class_metrics(study_true[:, c], study_prob[:, c], t)
        study_row["auc_ci"] = bootstrap_ci(study_patients, study_true[:, c], study_prob[:, c], auc_or_none, n_boot, seed)
        result["study"][name] = study_row
    return result
