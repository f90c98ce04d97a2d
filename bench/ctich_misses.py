"""Which CT-ICH bleeds does a model miss? Slice AUC at CT-ICH by bleed size, and against which negatives.

    .venv/bin/python bench/ctich_misses.py RUN [RUN ...] [--label NAME ...]

CT-ICH ships a hemorrhage mask per slice (``mask_pixels`` in its labels.csv counts the 512x512 original). The
positive slices of a class are split into thirds by that area, and each third is scored against every negative
slice of the class: if a model misses mostly the small bleeds, its gap is one of size (thin crescents, small
contusions); if it misses large ones as well, it is one of appearance. A second table splits a subtype's
negatives instead: slices with no blood at all, and slices with blood of another subtype only. A subtype head
that separates its positives from clean slices but not from other blood detects blood and guesses the type.
A RUN is a run folder whose
``eval/predictions.csv`` holds CT-ICH slices (a run trained without CT-ICH), or several fold runs joined with
``+`` (``runs/A_f0+runs/A_f1+runs/A_f2``: their out-of-fold predictions pooled).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.paired_auc import pooled  # noqa: E402
from training.metrics import roc_auc  # noqa: E402

LABELS_CSV = REPO.parent / "shared" / "data" / "ctich" / "labels.csv"
CLASSES = ("any", "intraparenchymal", "epidural", "subdural")


def mask_areas(path: Path = LABELS_CSV) -> dict[str, int]:
    """Record key (``ctich/<patient number>/<slice>``, as the training reader writes it) -> bleed pixels."""
    with open(path, newline="") as f:
        return {f"ctich/{int(r['patient_id'].split('_')[-1])}/{int(r['slice_number'])}": int(r["mask_pixels"])
                for r in csv.DictReader(f)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--label", nargs="*", default=None, help="a short name per run for the table")
    parser.add_argument("--labels-csv", type=Path, default=LABELS_CSV, help="CT-ICH's labels.csv")
    args = parser.parse_args(argv)
    if not args.labels_csv.is_file():
        sys.exit(f"CT-ICH's labels are not at {args.labels_csv}")
    areas = mask_areas(args.labels_csv)
    names = args.label or args.runs
    print("| run | class | small third | middle third | large third | all |")
    print("|---|---|---|---|---|---|")
    for name, spec in zip(names, args.runs):
        p = pooled(spec, "ctich")
        area = np.array([areas[k] for k in p["key"]])
        for c in CLASSES:
            y = p[f"label_{c}"].astype(int)
            prob = p[f"prob_{c}"].astype(float)
            positive, negative = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
            edges = np.quantile(area[positive], [1 / 3, 2 / 3])
            thirds = np.digitize(area[positive], edges)
            cells = []
            for t in range(3):
                mine = positive[thirds == t]
                rows = np.concatenate([mine, negative])
                auc = roc_auc(y[rows], prob[rows])
                sizes = area[mine]
                cells.append(f"{auc:.3f} (n={len(mine)}, {int(sizes.min())}-{int(sizes.max())} px)")
            cells.append(f"{roc_auc(y, prob):.3f}")  # roc_auc leaves out unknown labels itself
            print(f"| {name} | {c} | " + " | ".join(cells) + " |", flush=True)
    print("\n| run | subtype | against slices with no blood | against slices with another subtype only |")
    print("|---|---|---|---|")
    for name, spec in zip(names, args.runs):
        p = pooled(spec, "ctich")
        blood = p["label_any"].astype(int) == 1
        for c in CLASSES[1:]:
            y = p[f"label_{c}"].astype(int)
            prob = p[f"prob_{c}"].astype(float)
            cells = []
            for negatives in (y == 0) & ~blood, (y == 0) & blood:
                rows = np.flatnonzero((y == 1) | negatives)
                cells.append(f"{roc_auc(y[rows], prob[rows]):.3f} (n={int(negatives.sum())})")
            print(f"| {name} | {c} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
