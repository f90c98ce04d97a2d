"""The out-of-fold table: per-fold AUCs, their spread, and every fold's held-out slices ranked together."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ich_viewer.core.contract import CLASSES
from training.crossval import cross_validation_markdown, read_predictions
from training.evaluate import _write_predictions


def fold_run(root, name, patients, seed, shift=0.0, positives=True):
    """A run folder whose eval/predictions.csv holds 6 slices per patient, written by the evaluator's own writer."""
    rng = np.random.default_rng(seed)
    records = [SimpleNamespace(key=f"{p}/{i}", patient=p, study=p, index=i) for p in patients for i in range(6)]
    labels = (rng.random((len(records), len(CLASSES))) < 0.4).astype(np.uint8)
    labels[:6] = 0  # the first patient is clean, so the study column has negatives too
    if not positives:
        labels[:, CLASSES.index("subarachnoid")] = 0
    probs = np.clip(0.3 * labels + 0.7 * rng.random(labels.shape) + shift, 0, 1)
    (root / name / "eval").mkdir(parents=True)
    _write_predictions(root / name / "eval" / "predictions.csv", records, labels, probs)
    return root / name


def test_pooled_and_per_fold_aucs_match_sklearn_and_a_fold_without_positives_says_so(tmp_path):
    runs = {"fold0": fold_run(tmp_path, "fold0", ["a", "b", "c"], 0),
            "fold1": fold_run(tmp_path, "fold1", ["d", "e"], 1, shift=0.2, positives=False),
            "fold2": fold_run(tmp_path, "fold2", ["f", "g", "h"], 2)}
    table = cross_validation_markdown(runs, n_boot=200)
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in table.splitlines() if line.startswith("| "))}
    read = {name: read_predictions(folder) for name, folder in runs.items()}
    any_k = CLASSES.index("any")
    for name, (patients, _, labels, probs) in read.items():
        assert rows[name][1] == f"{len(set(patients))} / {len(patients)}"
        cell = rows[name][2 + any_k]
        assert float(cell.split()[0]) == pytest.approx(roc_auc_score(labels[:, any_k], probs[:, any_k]), abs=6e-4)
        assert cell.endswith(f"({labels[:, any_k].sum()})")
        study_true = labels[:, any_k].reshape(-1, 6).max(axis=1)  # 6 slices per patient, one study each
        study_prob = probs[:, any_k].reshape(-1, 6).max(axis=1)
        assert float(rows[name][-1]) == pytest.approx(roc_auc_score(study_true, study_prob), abs=6e-4)
    assert rows["fold1"][2 + CLASSES.index("subarachnoid")] == "n/a (0)"  # subarachnoid: no positive slice held out in that fold
    labels = np.concatenate([r[2] for r in read.values()])
    probs = np.concatenate([r[3] for r in read.values()])
    pooled = rows["pooled out-of-fold [95% CI]"]
    assert pooled[1] == f"8 / {len(labels)}"
    for k, c in enumerate(CLASSES):
        auc = roc_auc_score(labels[:, k], probs[:, k])
        cell = pooled[2 + k]
        assert float(cell.split()[0]) == pytest.approx(auc, abs=6e-4) and cell.endswith(f"({labels[:, k].sum()})")
        low, high = map(float, cell[cell.index("[") + 1:cell.index("]")].split(", "))
        assert low <= auc <= high
    # The mean row averages the per-fold AUCs (it is not the pooled AUC, which fold1's shift lowers).
    fold_aucs = [roc_auc_score(r[2][:, any_k], r[3][:, any_k]) for r in read.values()]
    mean_row = rows["mean over folds (min-max, folds with positives)"]
    mean_cell = mean_row[2 + any_k]
    mean, low_high, count = mean_cell.replace("(", "").replace(")", "").replace(",", "").split()
    assert float(mean) == pytest.approx(np.mean(fold_aucs), abs=6e-4) and count == "3"
    assert [float(v) for v in low_high.split("-")] == pytest.approx([min(fold_aucs), max(fold_aucs)], abs=6e-4)
    assert mean_row[2 + CLASSES.index("subarachnoid")].endswith(", 2)")  # averaged over the two folds that have positives


def test_runs_that_hold_out_the_same_patient_are_not_a_cross_validation(tmp_path):
    runs = {"fold0": fold_run(tmp_path, "fold0", ["a", "b"], 0), "again": fold_run(tmp_path, "again", ["b", "c"], 1)}
    with pytest.raises(ValueError, match="`again` and `fold0` both hold out the same patients"):
        cross_validation_markdown(runs, n_boot=50)


def test_a_run_without_predictions_says_which_step_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `python -m training evaluate`"):
        read_predictions(tmp_path / "never_evaluated")


def test_bundle_refuses_two_runs_that_would_share_a_row(tmp_path):
    from training.bundle import _run_folders

    (tmp_path / "a" / "fold1").mkdir(parents=True)
    (tmp_path / "b" / "fold1").mkdir(parents=True)
    with pytest.raises(ValueError, match="two runs share the folder name fold1"):
        _run_folders([str(tmp_path / "a" / "fold1"), str(tmp_path / "b" / "fold1")])
    assert _run_folders([str(tmp_path / "a" / "fold1")]) == [tmp_path / "a" / "fold1"]
