"""Does a model score a slice by its blood or by its level in the head? AUC and false alarms per level band.

    .venv/bin/python bench/slice_level.py RUN [RUN ...] [--label NAME ...] [--source ctich]

Bleeds cluster at the level of the basal ganglia and ventricles, so the level of a slice (the anatomy it shows)
predicts blood in the training data: a model can learn the anatomy instead of the blood, and then flag the
middle slices of every normal head. The usual slice AUC hides this, because the many easy slices at the top
and bottom of the head are negatives that any model ranks low. For one source's slices in each RUN's
``eval/predictions.csv`` (a run trained without that source, or fold runs joined with ``+``), each study is
cut into five bands of level, and per band this prints:

- the share of slices of **patients with no bleed at all** with P(any) above 0.5 (false alarms that no
  threshold near the middle of the range avoids; CT-ICH has 39 such patients, PHE-SICH none);
- the AUC of "any" within the band (positives against negatives of the same level).

The last column is the level-stratified AUC: each band's AUC weighted by its positive slices, so that a model
is credited only for ranking blood above bloodless slices of the same level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.paired_auc import patient_resamples, pooled  # noqa: E402
from training.data.dataset import slice_levels  # noqa: E402
from training.metrics import roc_auc  # noqa: E402

BANDS = 5


def levels_and_clean(study: np.ndarray, index: np.ndarray, any_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each slice's level band in its study (as ``train.position_match`` draws them), and whether its study has
    no positive slice."""
    clean = np.zeros(len(study), bool)
    for s in np.unique(study):
        mine = study == s
        clean[mine] = any_label[mine].max() == 0
    return slice_levels(study, index, BANDS), clean


def band_scores(y: np.ndarray, prob: np.ndarray, band: np.ndarray, clean: np.ndarray):
    """Per band (alarm share among clean patients' slices or None, AUC or None, positives), and the
    level-stratified AUC: the bands' AUCs weighted by their positive slices."""
    rows, weighted, weight = [], 0.0, 0
    for b in range(BANDS):
        mine = band == b
        alarms = float(np.mean(prob[mine & clean] > 0.5)) if (mine & clean).any() else None
        auc = roc_auc(y[mine], prob[mine])
        positives = int((y[mine] == 1).sum())
        if auc is not None:
            weighted, weight = weighted + auc * positives, weight + positives
        rows.append((alarms, auc, positives))
    return rows, (weighted / weight if weight else None)


def paired_stratified(patients: np.ndarray, y: np.ndarray, band: np.ndarray, a: np.ndarray, b: np.ndarray,
                      n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Level-stratified AUC of b minus a, with a 95% interval over resamples of whole patients (both runs)."""
    clean = np.zeros(len(y), bool)
    base = band_scores(y, b, band, clean)[1] - band_scores(y, a, band, clean)[1]
    differences = []
    for rows in patient_resamples(patients, n_boot, seed):
        sa = band_scores(y[rows], a[rows], band[rows], clean[rows])[1]
        sb = band_scores(y[rows], b[rows], band[rows], clean[rows])[1]
        if sa is not None and sb is not None:
            differences.append(sb - sa)
    low, high = np.quantile(differences, [0.025, 0.975])
    return base, float(low), float(high)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--label", nargs="*", default=None, help="a short name per run for the table")
    parser.add_argument("--source", default="ctich", help="record-key prefix of the scored source")
    parser.add_argument("--boot", type=int, default=0, help="with two runs: resamples of patients for a paired "
                                                            "interval of the second's stratified AUC minus the first's")
    args = parser.parse_args(argv)
    names = args.label or args.runs
    bands = [f"{b / BANDS:.1f}-{(b + 1) / BANDS:.1f}" for b in range(BANDS)]
    print(f"{args.source}, bands from the lowest slice (0.0) to the highest (1.0) of each study; "
          "cells: clean patients' slices with P(any) > 0.5 / AUC within the band\n")
    print("| run | " + " | ".join(bands) + " | all slices: AUC | level-stratified AUC |")
    print("|---|" + "---|" * (BANDS + 2))
    for name, spec in zip(names, args.runs):
        p = pooled(spec, args.source)
        y, prob = p["label_any"].astype(int), p["prob_any"].astype(float)
        band, clean = levels_and_clean(p["study"], p["index"].astype(int), y)
        rows, stratified = band_scores(y, prob, band, clean)
        cells = [("-" if alarms is None else f"{alarms:.0%}") + " / " + ("-" if auc is None else f"{auc:.3f} ({n})")
                 for alarms, auc, n in rows]
        print(f"| {name} | " + " | ".join(cells) + f" | {roc_auc(y, prob):.3f} | {stratified:.3f} |", flush=True)
    if args.boot and len(args.runs) == 2:
        first, second = (pooled(spec, args.source) for spec in args.runs)
        if not np.array_equal(first["key"], second["key"]):
            sys.exit("the two runs did not score the same slices in the same order")
        y = first["label_any"].astype(int)
        band, _ = levels_and_clean(first["study"], first["index"].astype(int), y)
        difference, low, high = paired_stratified(first["patient"], y, band, first["prob_any"].astype(float),
                                                  second["prob_any"].astype(float), args.boot)
        print(f"\n{names[1]} minus {names[0]}, level-stratified AUC: {difference:+.3f} [{low:+.3f}, {high:+.3f}] "
              f"(95% interval over {args.boot} resamples of patients)")


if __name__ == "__main__":
    main()
