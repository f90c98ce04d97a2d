"""Is run B really better than run A on the same patients? The paired difference of slice AUC, B - A, with a
95% percentile interval from resampling patients (the same resample for both runs, so what the two runs share
cancels out; two separate intervals that overlap say much less).

    .venv/bin/python bench/paired_auc.py runs/A runs/B [--boot 1000]

Both runs must have been evaluated (``<run>/eval/predictions.csv``) on the same slices, e.g. two recipes
trained without the same hospital. Prints one row per class that the held-out slices label. The probabilities
are read as `evaluate` wrote them (six decimals), so an AUC can differ from the report's in the third decimal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import csv

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ich_viewer.core.contract import CLASSES  # noqa: E402
from training.metrics import roc_auc  # noqa: E402


def patient_resamples(patients: np.ndarray, n_boot: int, seed: int = 0):
    """``n_boot`` arrays of row indices, each a resample of whole patients with replacement."""
    _, group = np.unique(patients, return_inverse=True)
    rows_of = [np.flatnonzero(group == g) for g in range(group.max() + 1)]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.concatenate([rows_of[g] for g in rng.integers(0, len(rows_of), len(rows_of))])


def paired_difference(patients: np.ndarray, labels: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 1000,
                      seed: int = 0) -> tuple[float, float, float] | None:
    """AUC(b) - AUC(a) over the known rows, and its 95% interval over resamples of whole patients."""
    known = labels >= 0
    patients, labels, a, b = patients[known], labels[known], a[known], b[known]
    base_a, base_b = roc_auc(labels, a), roc_auc(labels, b)
    if base_a is None or base_b is None:
        return None
    differences = []
    for rows in patient_resamples(patients, n_boot, seed):
        auc_a, auc_b = roc_auc(labels[rows], a[rows]), roc_auc(labels[rows], b[rows])
        if auc_a is not None and auc_b is not None:
            differences.append(auc_b - auc_a)
    low, high = np.quantile(differences, [0.025, 0.975])
    return base_b - base_a, float(low), float(high)


def read_predictions(run: Path) -> dict[str, np.ndarray]:
    """``<run>/eval/predictions.csv`` as one array per column."""
    with open(run / "eval" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([r[key] for r in rows]) for key in rows[0]} if rows else {}


def pooled(spec: str, source: str) -> dict[str, np.ndarray]:
    """One source's rows (record keys ``<source>/...``) of one run's predictions, or of several runs' joined with
    '+' (``runs/A_f0+runs/A_f1``: fold runs' out-of-fold predictions pooled)."""
    parts = [read_predictions(Path(p)) for p in spec.split("+")]
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = np.char.startswith(columns["key"].astype(str), f"{source}/")
    return {k: v[keep] for k, v in columns.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args(argv)
    a, b = read_predictions(args.run_a), read_predictions(args.run_b)
    if not np.array_equal(a["key"], b["key"]):
        sys.exit("the two runs were not evaluated on the same slices in the same order")
    print(f"| class | AUC {args.run_a.name} | AUC {args.run_b.name} | B - A [95% CI over patients] |")
    print("|---|---:|---:|---|")
    for c in CLASSES:
        labels = a[f"label_{c}"].astype(int)
        prob_a, prob_b = a[f"prob_{c}"].astype(float), b[f"prob_{c}"].astype(float)
        result = paired_difference(a["patient"], labels, prob_a, prob_b, args.boot)
        if result is None:
            continue
        known = labels >= 0
        auc_a, auc_b = roc_auc(labels[known], prob_a[known]), roc_auc(labels[known], prob_b[known])
        difference, low, high = result
        print(f"| {c} | {auc_a:.3f} | {auc_b:.3f} | {difference:+.3f} [{low:+.3f}, {high:+.3f}] |", flush=True)


if __name__ == "__main__":
    main()
