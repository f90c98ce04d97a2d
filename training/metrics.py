"""Per-class metrics at slice and study level, with bootstrap intervals over patients.

scikit-learn computes the reported point estimates; what is ours is the RSNA weighted log loss, the
study-level max, resampling whole patients (slices of one patient are not independent) and two exact
numpy AUC/AP functions for the bootstrap, where sklearn's input checks would cost ~25 s per evaluation.

A label below 0 is unknown (a class the slice's source does not label): every function here drops
those entries per class, so an unknown label changes nothing, and never counts as a negative.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ich_viewer.core.contract import CLASSES

RSNA_WEIGHTS = (2, 1, 1, 1, 1, 1)  # the Kaggle metric weights "any" twice
EPS = 1e-7


def known(y_true_c, y_prob_c, *others) -> tuple[np.ndarray, ...]:
    """One class's labels and scores (and any further per-slice arrays) on its known rows only."""
    y = np.asarray(y_true_c)
    keep = y >= 0
    return (y[keep], np.asarray(y_prob_c)[keep], *(np.asarray(o)[keep] for o in others))


def weighted_log_loss(y_true, y_prob, weights: Sequence[float] = RSNA_WEIGHTS) -> float:
    """RSNA 2019 metric: per slice the weighted mean of the six BCEs, then the mean over slices.

    Unknown labels are left out of their slice's mean; a slice with none known is left out (nan if all are)."""
    y = np.asarray(y_true, float)
    p = np.clip(np.asarray(y_prob, float), EPS, 1 - EPS)
    w = np.asarray(weights, float) * (y >= 0)  # [N, 6]: exactly the weights where known
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    per_slice = w.sum(1)
    counted = per_slice > 0
    return float(((bce * w).sum(1)[counted] / per_slice[counted]).mean()) if counted.any() else float("nan")


def roc_auc(y_true_c, y_prob_c) -> float | None:
    """scikit-learn's ROC AUC of one class on its known rows; None unless both labels occur (undefined then)."""
    y, p = known(y_true_c, y_prob_c)
    return float(roc_auc_score(y, p)) if 0 < np.count_nonzero(y) < y.size else None


def per_class_auc(y_true, y_prob, classes: Sequence[str] = CLASSES) -> dict[str, float | None]:
    """ROC AUC per class (columns in ``classes`` order), None where a class lacks either label: what each
    epoch's validation and the export's INT8 check report. The evaluation's :func:`class_metrics` takes
    the same :func:`roc_auc`, so every AUC in training follows one rule."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    return {name: roc_auc(y_true[:, c], y_prob[:, c]) for c, name in enumerate(classes)}


def _ratio(a: float, b: float, empty: float | None) -> float | None:
    return float(a / b) if b else empty


def class_metrics(y_true_c, y_prob_c, threshold: float) -> dict:
    """Counts and rates for one class at ``threshold`` (flag = probability >= threshold), AUC and AP.

    0/0 conventions: precision and F1 are 0.0 when nothing is flagged / nothing is right (sklearn's
    ``zero_division=0``: a silent model earns no credit). Recall is None with no positives and
    specificity None with no negatives: those rates are undefined by the data, and a 0.0 would read as
    "missed every lesion". AUC is None unless both labels occur; AP is None without positives.
    Unknown labels are left out: ``n`` counts the known slices.
    """
    y, p = known(y_true_c, y_prob_c)
    y, p = y.astype(bool), p.astype(float)
    flag = p >= threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    fn, tn = int((~flag & y).sum()), int((~flag & ~y).sum())
    return {"n": int(y.size), "n_pos": tp + fn, "threshold": float(threshold), "auc": roc_auc(y, p),
            "ap": float(average_precision_score(y, p)) if tp + fn else None,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "precision": _ratio(tp, tp + fp, 0.0), "recall": _ratio(tp, tp + fn, None),
            "specificity": _ratio(tn, tn + fp, None), "f1": _ratio(2 * tp, 2 * tp + fp + fn, 0.0)}


def _ranked(y_true, y_prob):
    """Known labels sorted by ascending score plus the start index of every run of tied scores."""
    y_true, y_prob = known(y_true, y_prob)
    order = np.argsort(y_prob, kind="stable")  # timsort: near O(n) on the presorted bootstrap rows
    s, y = y_prob[order], y_true[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return y, starts


def auc_or_none(y_true, y_prob) -> float | None:
    """ROC AUC as the Mann-Whitney statistic with tied scores at their mean rank (= sklearn); None if one label."""
    y, starts = _ranked(y_true, y_prob)
    n, n_pos = y.size, int(y.sum())
    if n_pos in (0, n):
        return None
    ends = np.r_[starts[1:], n]
    mean_rank = (starts + ends + 1) / 2.0  # 1-based ranks, ties averaged
    pos_per_run = np.add.reduceat(y.astype(np.int64), starts)
    rank_sum = float((pos_per_run * mean_rank).sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * (n - n_pos))


def ap_or_none(y_true, y_prob) -> float | None:
    """Average precision, sum over distinct thresholds of (recall step) x precision (= sklearn); None without positives."""
    y, starts = _ranked(y_true, y_prob)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    pos_per_run = np.add.reduceat(y.astype(np.int64), starts)
    flagged_pos = n_pos - np.r_[0, np.cumsum(y)][starts]  # flagged at run k's score: everything from its start
    flagged = y.size - starts
    return float((pos_per_run * flagged_pos / flagged).sum() / n_pos)


def study_level(study_ids: Sequence[str], y_true, y_prob):
    """Max over each study's slices (labels and probabilities), studies in first-appearance order.

    A class unknown on every slice of a study stays unknown (-1); a source labels a class on all its slices
    or on none, so a study never mixes known and unknown labels of one class."""
    ids, first, inverse = np.unique(np.asarray(study_ids), return_index=True, return_inverse=True)
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    true = np.full((len(ids), y_true.shape[1]), y_true.min(initial=0), y_true.dtype)  # below every label
    prob = np.zeros((len(ids), y_prob.shape[1]), y_prob.dtype)
    np.maximum.at(true, inverse.ravel(), y_true)
    np.maximum.at(prob, inverse.ravel(), y_prob)
    order = np.argsort(first)
    return [str(ids[k]) for k in order], true[order], prob[order]


def bootstrap_ci(groups: Sequence[str], y_true_c, y_prob_c, metric: Callable, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> list[float] | None:
    """Percentile interval of ``metric`` over resamples of whole groups (patients) with replacement.

    A resample is a count per group; the rows are built with one ``np.repeat`` over slices presorted by
    score, so the metric gets score-sorted rows and its own sort is nearly free. Resamples where the
    metric is None or raises ValueError (e.g. no positive patient drawn) are skipped; fewer than half
    valid gives None rather than an interval from a biased subset. Only known rows are resampled.
    """
    y, p, groups = known(y_true_c, y_prob_c, groups)
    p = p.astype(float)
    _, group = np.unique(np.asarray(groups), return_inverse=True)
    group = group.ravel()
    n_groups = int(group.max()) + 1 if group.size else 0
    if n_groups == 0:
        return None
    order = np.argsort(p, kind="stable")
    group_sorted = group[order]
    draws = np.random.default_rng(seed).integers(0, n_groups, (n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups), np.int64)
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1)
    values = []
    for b in range(n_boot):
        rows = np.repeat(order, counts[b, group_sorted])
        try:
            value = metric(y[rows], p[rows])
        except ValueError:
            continue
        if value is not None:
            values.append(value)
    if len(values) < n_boot / 2:
        return None
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]


def evaluate(y_true, y_prob, patients: Sequence[str], studies: Sequence[str], thresholds: dict[str, float],
             n_boot: int = 1000, seed: int = 0) -> dict:
    """The JSON summary behind the report and the model card (slice level and study-level max)."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, float)
    if y_true.ndim != 2 or y_true.shape != y_prob.shape or y_true.shape[1] != len(CLASSES):
        raise ValueError(f"expected y_true and y_prob of shape [N, {len(CLASSES)}], got {y_true.shape}, {y_prob.shape}")
    if not len(patients) == len(studies) == len(y_true):
        raise ValueError("patients and studies need one entry per slice")
    patients, studies = [str(x) for x in patients], [str(x) for x in studies]
    # A study is keyed by (patient, study) so two patients' reused study numbers never merge.
    keys = [f"{pt}\x1f{st}" for pt, st in zip(patients, studies)]
    study_keys, study_true, study_prob = study_level(keys, y_true, y_prob)
    study_patients = [k.split("\x1f", 1)[0] for k in study_keys]
    result = {"n_slices": int(len(y_true)), "n_patients": len(set(patients)), "n_studies": len(study_keys),
              "log_loss": weighted_log_loss(y_true, y_prob), "slice": {}, "study": {}}
    for c, name in enumerate(CLASSES):
        t = float(thresholds[name])
        yc, pc = y_true[:, c], y_prob[:, c]
        row = class_metrics(yc, pc, t)
        row["auc_ci"] = bootstrap_ci(patients, yc, pc, auc_or_none, n_boot, seed)
        row["ap_ci"] = bootstrap_ci(patients, yc, pc, ap_or_none, n_boot, seed)
        result["slice"][name] = row
        study_row = class_metrics(study_true[:, c], study_prob[:, c], t)
        study_row["auc_ci"] = bootstrap_ci(study_patients, study_true[:, c], study_prob[:, c], auc_or_none, n_boot,
                                           seed)
        result["study"][name] = study_row
    return result
