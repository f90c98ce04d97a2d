"""Slice AUC of any ONNX model file on one source of a prepared training cache (a hospital it never saw).

    .venv/bin/python -m training prepare --config two_hospitals_resnet18   # once: the two-hospital cache
    .venv/bin/python bench/cross_site.py [--model OTHER.onnx (default: the bundled file)] \\
        [--cache runs/cache_two_hospitals_160] [--source phe_sich]

Runs the file through the viewer's engine (ONNX Runtime) on every cached slice of ``--source`` and prints
the AUC of each class that source labels. Used for the README's comparison of the previous bundled model
(CT-ICH only) with the two-hospital recipe's leave-one-hospital-out run (both never saw PHE-SICH).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ich_viewer.core.contract import CLASSES  # noqa: E402
from ich_viewer.core.model import IchModel, bundled_model_path  # noqa: E402
from ich_viewer.paths import models_dir  # noqa: E402
from training.data.cache import Cache  # noqa: E402
from training.metrics import roc_auc  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=bundled_model_path(models_dir())[0])
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "cache_two_hospitals_160")
    parser.add_argument("--source", default="phe_sich")
    args = parser.parse_args(argv)
    cache = Cache.open(args.cache)
    rows = np.array([i for i, r in enumerate(cache.records) if r.source == args.source])
    if not len(rows):
        raise SystemExit(f"no slices of source {args.source!r} in {args.cache}")
    model = IchModel(args.model)
    probabilities = np.concatenate([model.run(cache.images[rows[s:s + 32]].astype(np.float32)[:, None]).probabilities
                                    for s in range(0, len(rows), 32)])
    labels = cache.labels[rows]
    print(f"{args.model.name} on {args.source}: {len(rows)} slices, {len({cache.records[i].patient for i in rows})} patients")
    print("| class | positive slices | slice AUC |\n|---|---:|---:|")
    for c, name in enumerate(CLASSES):
        known = labels[:, c] >= 0
        if known.any() and 0 < labels[known, c].sum() < known.sum():
            print(f"| {name} | {int(labels[known, c].sum())} | {roc_auc(labels[known, c], probabilities[known, c]):.3f} |")


if __name__ == "__main__":
    main()
