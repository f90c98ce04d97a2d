"""Metrics, threshold presets, operating curves and the report, against hand-computed values."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from ich_viewer.core.contract import CLASSES
from training.metrics import (ap_or_none, auc_or_none, bootstrap_ci, class_metrics, evaluate, per_class_auc,
                              study_level, weighted_log_loss)
from training.report import write_report
from ich_viewer.core.thresholds import read_curve
from training.thresholds import PRESET_RULES, calibrate, curves, operating_curve

# Four slices. "any" is informative; the five subtypes are all negative at p = 0.5 (BCE = ln 2 each).
Y4 = np.zeros((4, 6), np.uint8)
Y4[:, 0] = [1, 0, 1, 0]
P4 = np.full((4, 6), 0.5)
P4[:, 0] = [0.9, 0.4, 0.6, 0.7]


# --------------------------------------------------------------------------- metrics by hand


def test_weighted_log_loss_by_hand():
    # any-BCE per row: -ln 0.9 = 0.1053605, -ln 0.6 = 0.5108256, -ln 0.6 = 0.5108256, -ln 0.3 = 1.2039728
    # mean 0.5827461; per-row weights (2,1,1,1,1,1)/7 -> (2 * 0.5827461 + 5 * ln 2) / 7 = 0.6616040
    assert weighted_log_loss(Y4, P4) == pytest.approx(0.6616040, abs=1e-6)
    # uniform weights: (0.5827461 + 5 * 0.6931472) / 6 = 0.6747471
    assert weighted_log_loss(Y4, P4, weights=(1,) * 6) == pytest.approx(0.6747471, abs=1e-6)
    # p = 0 on a positive is clipped to 1e-7: -ln 1e-7 = 16.118096 (one class, weight 1)
    assert weighted_log_loss([[1]], [[0.0]], weights=(1,)) == pytest.approx(16.118096, abs=1e-5)


def test_class_metrics_by_hand():
    m = class_metrics(Y4[:, 0], P4[:, 0], 0.5)
    # flags at 0.5: [1, 0, 1, 1] vs labels [1, 0, 1, 0] -> tp 2, fp 1, tn 1, fn 0
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"], m["n_pos"]) == (2, 1, 1, 0, 4, 2)
    assert m["precision"] == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert m["recall"] == 1.0  # 2 / (2 + 0)
    assert m["specificity"] == 0.5  # 1 / (1 + 1)
    assert m["f1"] == pytest.approx(0.8)  # 2*2 / (2*2 + 1 + 0)
    # AUC: positives {0.9, 0.6} vs negatives {0.4, 0.7}: 0.9>0.4, 0.9>0.7, 0.6>0.4, 0.6<0.7 -> 3/4
    assert m["auc"] == 0.75
    # AP: ranked 0.9(+) 0.7(-) 0.6(+) 0.4(-): recall steps 1/2 at precisions 1/1 and 2/3 -> 0.8333
    assert m["ap"] == pytest.approx(0.8333333, abs=1e-6)
    # probability exactly at the threshold is flagged
    assert class_metrics([1], [0.5], 0.5)["tp"] == 1


def test_per_class_auc_is_sklearns_and_none_without_both_labels():
    y, p = Y4.copy(), P4.copy()
    y[:, 1] = 1  # epidural: positives only
    p[:, 2] = [0.1, 0.2, 0.3, 0.4]
    y[:, 2] = [0, 1, 0, 1]
    auc = per_class_auc(y, p)
    assert list(auc) == list(CLASSES)
    assert auc["any"] == 0.75 == class_metrics(y[:, 0], p[:, 0], 0.5)["auc"]
    assert auc["intraparenchymal"] == roc_auc_score(y[:, 2], p[:, 2]) == 0.75
    assert auc["epidural"] is None and auc["subdural"] is None  # one label only: undefined, not 0.5
    assert per_class_auc(y[:, :1], p[:, :1], ["x"]) == {"x": 0.75}


def test_class_metrics_undefined_rates():
    none_flagged = class_metrics([0, 1], [0.1, 0.2], 0.9)
    assert none_flagged["precision"] == 0.0 and none_flagged["f1"] == 0.0 and none_flagged["recall"] == 0.0
    no_pos = class_metrics([0, 0], [0.1, 0.7], 0.5)
    assert no_pos["recall"] is None and no_pos["auc"] is None and no_pos["ap"] is None
    assert no_pos["specificity"] == 0.5 and no_pos["f1"] == 0.0
    no_neg = class_metrics([1, 1], [0.1, 0.7], 0.5)
    assert no_neg["specificity"] is None and no_neg["auc"] is None and no_neg["ap"] == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=40))
def test_fast_auc_and_ap_equal_sklearn_with_ties(pairs):
    y = np.array([a for a, _ in pairs])
    p = np.array([b for _, b in pairs]) / 6.0  # few distinct values: many ties
    if 0 < y.sum() < len(y):
        assert auc_or_none(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    else:
        assert auc_or_none(y, p) is None
    if y.sum():
        assert ap_or_none(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    else:
        assert ap_or_none(y, p) is None


def test_study_level_max_in_first_appearance_order():
    ids, t, p = study_level(["b", "a", "b", "c", "a"],
                            [[0, 1], [0, 0], [1, 0], [0, 0], [1, 0]],
                            [[0.1, 0.9], [0.2, 0.1], [0.7, 0.3], [0.05, 0.0], [0.4, 0.6]])
    assert ids == ["b", "a", "c"]
    assert t.tolist() == [[1, 1], [1, 0], [0, 0]]
    assert p.tolist() == [[0.7, 0.9], [0.4, 0.6], [0.05, 0.0]]


# --------------------------------------------------------------------------- bootstrap over patients


def test_bootstrap_moves_a_patients_slices_together():
    # patient k has k + 1 slices, all with score k / 10: a resample holds a multiple of k + 1 of each score
    sizes = np.arange(1, 7)
    groups = np.repeat([f"p{k}" for k in range(6)], sizes)
    prob = np.repeat(np.arange(6) / 10, sizes)
    seen = []

    def record(y, p):
        seen.append(np.round(p * 10).astype(int))
        return float(p.mean())

    assert bootstrap_ci(groups, np.zeros(len(prob)), prob, record, n_boot=200, seed=1) is not None
    assert len(seen) == 200
    for draw in seen:
        counts = np.bincount(draw, minlength=6)
        assert all(counts[k] % sizes[k] == 0 for k in range(6))
    assert len({len(d) for d in seen}) > 1


def test_bootstrap_patient_ci_is_wider_than_slice_ci_for_correlated_slices():
    # 10 patients x 20 identical slices: the data hold 10 independent values, not 200
    rng = np.random.default_rng(0)
    prob = np.repeat(rng.random(10), 20)
    patients = np.repeat(np.arange(10).astype(str), 20)
    mean = lambda y, p: float(p.mean())  # noqa: E731
    lo_p, hi_p = bootstrap_ci(patients, np.zeros(200), prob, mean, n_boot=400)
    lo_s, hi_s = bootstrap_ci(np.arange(200).astype(str), np.zeros(200), prob, mean, n_boot=400)
    assert lo_p <= prob.mean() <= hi_p
    assert (hi_p - lo_p) > 3 * (hi_s - lo_s)  # sqrt(20) ~ 4.5 times wider in expectation


def test_bootstrap_none_when_mostly_invalid_and_skips_value_errors():
    def broken(y, p):
        raise ValueError("only one class")

    groups, y, p = ["a", "b", "c"], [0, 1, 0], [0.1, 0.9, 0.2]
    assert bootstrap_ci(groups, y, p, broken, n_boot=50) is None
    assert bootstrap_ci(groups, y, p, lambda y, p: None, n_boot=50) is None
    # AUC needs the one positive patient "b" in the draw: P(drawn) = 1 - (2/3)^3 = 0.70 > 0.5
    ci = bootstrap_ci(groups, y, p, auc_or_none, n_boot=200)
    assert ci == [1.0, 1.0]


def test_bootstrap_is_fast_enough_for_a_real_validation_set():
    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.1
    p = np.clip(y * 0.3 + rng.random(3000) * 0.7, 0, 1)
    patients = np.repeat(np.arange(75).astype(str), 40)
    start = time.perf_counter()
    lo, hi = bootstrap_ci(patients, y, p, auc_or_none, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 2.0  # ~0.15 s here; 18 such calls make one evaluate()
    assert lo < roc_auc_score(y, p) < hi


# --------------------------------------------------------------------------- evaluate


def _dataset(seed: int = 0, n_patients: int = 12, per_patient: int = 8):
    rng = np.random.default_rng(seed)
    n = n_patients * per_patient
    y = (rng.random((n, 6)) < 0.3).astype(np.uint8)
    y[:, 0] = y[:, 1:].max(1)
    p = np.clip(0.35 * y + 0.65 * rng.random((n, 6)), 0, 1)
    patients = [f"pt{i // per_patient}" for i in range(n)]
    studies = [f"st{i // (per_patient // 2)}" for i in range(n)]  # two studies per patient
    return y, p, patients, studies


def test_evaluate_structure_and_json():
    y, p, patients, studies = _dataset()
    thresholds = {c: 0.5 for c in CLASSES}
    ev = evaluate(y, p, patients, studies, thresholds, n_boot=100)
    assert (ev["n_slices"], ev["n_patients"], ev["n_studies"]) == (96, 12, 24)
    assert ev["log_loss"] == pytest.approx(weighted_log_loss(y, p))
    assert set(ev["slice"]) == set(ev["study"]) == set(CLASSES)
    s = ev["slice"]["subdural"]
    assert s["auc"] == pytest.approx(roc_auc_score(y[:, 5], p[:, 5]))
    assert s["auc_ci"][0] <= s["auc"] <= s["auc_ci"][1] and len(s["ap_ci"]) == 2
    _, st_y, st_p = study_level(studies, y, p)
    assert ev["study"]["any"]["tp"] == class_metrics(st_y[:, 0], st_p[:, 0], 0.5)["tp"]
    assert ev["study"]["any"]["n"] == 24 and "auc_ci" in ev["study"]["any"]
    json.loads(json.dumps(ev))  # plain Python types only


def test_evaluate_leaves_unlabelled_rows_out_of_every_metric():
    """An unlabelled row (-1: unknown in every class) was refused; with partial labels it simply counts nowhere."""
    y, p, patients, studies = _dataset()
    y = y.astype(np.int8)
    y[3] = -1
    thresholds = {c: 0.5 for c in CLASSES}
    result = evaluate(y, p, patients, studies, thresholds, n_boot=10)
    rest = np.arange(len(y)) != 3
    reference = evaluate(y[rest], p[rest], list(np.asarray(patients)[rest]), list(np.asarray(studies)[rest]),
                         thresholds, n_boot=10)
    assert result["slice"] == reference["slice"] and result["study"] == reference["study"]
    assert result["log_loss"] == reference["log_loss"] and result["n_slices"] == len(y)


# --------------------------------------------------------------------------- thresholds


def _calibration_set():
    y = np.zeros((10, 6), np.uint8)
    p = np.full((10, 6), 0.01)
    # any: scores 0.1 .. 1.0; flags at t = score k (tp, fp -> F1 = 2tp / (2tp + fp + fn), P = 5):
    # 1.0: 1,0 -> .333   0.9: 1,1 -> .286   0.8: 2,1 -> .500 (prec .667)   0.7: 3,1 -> .667 (prec .75)
    # 0.6: 3,2 -> .600   0.5: 4,2 -> .727 (max)   0.4: 4,3 -> .667   0.3: 4,4 -> .615   0.2: 5,4 -> .714 (recall 1)
    p[:, 0] = np.arange(1, 11) / 10
    y[:, 0] = [0, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    # epidural: no positives -> every rule unmet (threshold 1.0, the reason in "unmet")
    # intraparenchymal: F1 tie, 0.9 (tp1 fp0 fn1 -> 2/3) vs 0.3 (tp2 fp2 fn0 -> 2/3): the higher wins
    p[:4, 2] = [0.9, 0.6, 0.5, 0.3]
    y[:4, 2] = [1, 0, 0, 1]
    # intraventricular: one positive at 0.12348; rounding to nearest (0.1235) would unflag it, down keeps it
    p[0, 3], y[0, 3] = 0.12348, 1
    # subarachnoid: the one positive has the lowest score -> best precision 1/10, never 0.7
    p[:, 4] = np.arange(1, 11) / 10
    y[0, 4] = 1
    # subdural: perfectly separated
    p[:, 5] = np.arange(1, 11) / 10
    y[7:, 5] = 1
    return y, p


def test_calibrate_presets_known_answers():
    presets = calibrate(*_calibration_set())
    assert presets["default"] == "balanced" and presets["rules"] == PRESET_RULES
    # any: 5 negatives, so specificity >= 0.80 allows one false positive: thresholds 1.0, 0.9, 0.8, 0.7; the
    # best F1 among them is 0.7's .667 (0.5's .727 flags two negatives). intraparenchymal: 8 negatives, one
    # false positive allowed; 0.9 (F1 2/3) beats 0.6 (1/2). subarachnoid: its one positive scores lowest, so
    # no threshold with one false positive or fewer (of 9 negatives) finds it: the rule is not met.
    assert presets["balanced"] == {"any": 0.7, "epidural": 1.0, "intraparenchymal": 0.9, "intraventricular": 0.1234,
                                   "subarachnoid": 1.0, "subdural": 0.8}
    assert presets["high_sensitivity"] == {"any": 0.2, "epidural": 1.0, "intraparenchymal": 0.3,
                                           "intraventricular": 0.1234, "subarachnoid": 0.1, "subdural": 0.8}
    # any: lowest threshold with precision >= 0.7 is 0.7 (0.75), although 0.8 and 0.9 fall below again
    # subdural: 0.7 flags 3 positives + 1 negative, precision 0.75 >= 0.7
    assert presets["precision_0.7"] == {"any": 0.7, "epidural": 1.0, "intraparenchymal": 0.9,
                                        "intraventricular": 0.1234, "subarachnoid": 1.0, "subdural": 0.7}
    # a rule that cannot be met is said, never filled in with another preset's threshold
    assert presets["unmet"] == {
        "balanced": {"epidural": "no positive validation slices",
                     "subarachnoid": "no threshold with specificity 0.80 finds a positive slice"},
        "high_sensitivity": {"epidural": "no positive validation slices"},
        "precision_0.7": {"epidural": "no positive validation slices",
                          "subarachnoid": "never reaches precision 0.70 on the validation slices"}}
    # ten slices: no class has 20 positive slices
    assert set(presets["calibration"].values()) == {"not calibrated"}


def test_a_class_is_calibrated_from_20_positive_slices_of_5_patients():
    rng = np.random.default_rng(0)
    y = np.zeros((200, 6), np.int8)
    y[:20, 0] = y[:20, 1] = y[:19, 2] = 1  # any and epidural: 20 positives; intraparenchymal 19
    p = rng.random((200, 6))
    spread = [f"p{i % 5}" for i in range(200)]  # positives from 5 patients
    assert calibrate(y, p, spread)["calibration"] == {"any": "calibrated", "epidural": "calibrated",
                                                      **dict.fromkeys(CLASSES[2:], "not calibrated")}
    few = [f"p{i % 4}" for i in range(200)]  # the same slices from 4 patients
    assert set(calibrate(y, p, few)["calibration"].values()) == {"not calibrated"}


def test_calibrate_recall_target_is_a_parameter():
    y, p = _calibration_set()
    assert calibrate(y, p, recall_target=0.8)["high_sensitivity"]["any"] == 0.5  # tp 4/5 at 0.5, 3/5 at 0.6


def test_operating_curve_and_read_curve_by_hand():
    # scores 0.1 0.4 0.35 0.8, labels 0 1 1 0; max_points 4 -> quantiles {0, 1} -> thresholds 0, 0.1, 0.8, 1
    c = operating_curve([0, 1, 1, 0], [0.1, 0.4, 0.35, 0.8], max_points=4)
    assert c["thresholds"] == [0.0, 0.1, 0.8, 1.0]
    assert c["precision"] == [0.5, 0.5, 0.0, 1.0]  # nothing flagged at 1.0 -> 1.0 by definition
    assert c["recall"] == [1.0, 1.0, 0.0, 0.0]
    assert c["specificity"] == [0.0, 0.0, 0.5, 1.0]
    # 0.45 lies between the points at 0.1 and 0.8: the one at 0.1 is read, a point the data really has.
    assert read_curve(c, 0.45) == {"precision": 0.5, "recall": 1.0, "specificity": 0.0, "measured_at": 0.1}
    assert read_curve(c, 0.8)["measured_at"] == 0.8  # a point itself is read exactly
    # From 0.8 up no positive is found: no precision (not the end point's 1.0 by convention).
    assert read_curve(c, 0.95) == {"precision": None, "recall": 0.0, "specificity": 0.5, "measured_at": 0.8}
    hand = {"thresholds": [0.0, 0.5, 1.0], "precision": [0.2, 0.6, 1.0], "recall": [1.0, 0.4, 0.0],
            "specificity": [0.0, 0.8, 1.0]}
    assert read_curve(hand, 0.25) == {"precision": 0.2, "recall": 1.0, "specificity": 0.0, "measured_at": 0.0}
    assert read_curve(hand, 0.75) == {"precision": 0.6, "recall": 0.4, "specificity": 0.8, "measured_at": 0.5}
    assert read_curve(hand, -1) == {"precision": 0.2, "recall": 1.0, "specificity": 0.0, "measured_at": 0.0}  # clamped
    assert read_curve(hand, 2) == {"precision": None, "recall": 0.0, "specificity": 1.0, "measured_at": 1.0}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=60), st.integers(3, 30))
def test_operating_curve_is_small_sorted_and_monotone(pairs, max_points):
    c = operating_curve([a for a, _ in pairs], [b for _, b in pairs], max_points=max_points)
    t = np.array(c["thresholds"])
    assert len(t) <= max_points and t[0] == 0.0 and t[-1] == 1.0 and (np.diff(t) > 0).all()
    assert len(c["precision"]) == len(c["recall"]) == len(c["specificity"]) == len(t)
    assert (np.diff(c["recall"]) <= 0).all() and (np.diff(c["specificity"]) >= 0).all()


def test_curves_cover_every_class():
    y, p = _calibration_set()
    out = curves(y, p, max_points=11)
    assert list(out) == list(CLASSES) and all(len(v["thresholds"]) <= 11 for v in out.values())


# --------------------------------------------------------------------------- report


def test_write_report_tables_and_plots(tmp_path):
    y, p, patients, studies = _dataset()
    y[:, 1] = 0  # epidural without positives: AUC shows n/a
    presets = calibrate(y, p)
    ev = evaluate(y, p, patients, studies, presets[presets["default"]], n_boot=50)
    path = write_report(tmp_path / "eval", "Test run", ev, y, p, presets, curves(y, p), notes=presets["notes"],
                        extra_markdown="\n## Extra\n")
    md = path.read_text()
    assert path == tmp_path / "eval" / "report.md"
    for name in CLASSES:
        assert f"| {name} |" in md
    assert f"{ev['slice']['any']['auc']:.3f}" in md and f"{ev['study']['subdural']['auc']:.3f}" in md
    assert "n/a" in md and "high_sensitivity" in md and "epidural: no positive" in md and md.endswith("## Extra\n")
    assert "![ROC curves](roc.png)" in md and "![Precision-recall curves](pr.png)" in md
    for png in ("roc.png", "pr.png"):
        data = (tmp_path / "eval" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 400_000
