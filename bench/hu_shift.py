"""Is the gap at a left-out hospital one of calibration? Score it with its HU shifted, globally and per patient.

    .venv/bin/python bench/hu_shift.py [--runs two_hospitals_phantom_resnet18] [--sources ctich phe_sich]

Two hospitals' CT can disagree by a few HU for the same tissue (scanner calibration, beam hardening, and for
PHE-SICH an export window that is not recorded): on middle slices brain reads about 35 HU at CT-ICH and 29 at
PHE-SICH read as 40/120. A model trained without one hospital then sees that hospital's blood and brain a few
HU off from what it learned. For each ``runs/<run>_without_<source>`` (the recipe trained without that hospital;
its prepared cache must be there) this scores every slice of the left-out hospital:

- with every pixel shifted by a fixed number of HU (a sweep): how much does calibration matter at all?
- per patient, shifted so that the patient's brain level (the median of its pixels between 15 and 45 HU)
  equals the training hospitals' median brain level: a test-time standardisation an engine could compute per
  series from the series itself, with no labels and no new model.

Prints slice AUC per labelled class, and the paired difference of the per-patient standardisation against
the images as they are, with a 95% interval over resampled patients (``bench/paired_auc.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.paired_auc import paired_difference  # noqa: E402
from ich_viewer.core.contract import CLASSES  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data.cache import Cache  # noqa: E402
from training.evaluate import load_trained  # noqa: E402
from training.metrics import roc_auc  # noqa: E402
from training.train import predict  # noqa: E402

BRAIN_HU = (15, 45)  # grey and white matter; excludes CSF (0-15), fresh blood (50-90) and bone


def brain_level(images: np.ndarray) -> float:
    """The median HU of a patient's brain-range pixels (a robust level; fine for a few HU of offset)."""
    pixels = images[(images >= BRAIN_HU[0]) & (images <= BRAIN_HU[1])]
    return float(np.median(pixels)) if pixels.size else float("nan")


def patient_levels(cache: Cache, rows: np.ndarray) -> dict[str, float]:
    patients = np.array([cache.records[i].patient for i in rows])
    return {p: brain_level(np.asarray(cache.images[np.sort(rows[patients == p])]))
            for p in np.unique(patients)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["two_hospitals_phantom_resnet18"],
                        help="run prefixes: runs/<prefix>_without_<source> must exist")
    parser.add_argument("--recipe", default="two_hospitals_phantom_resnet18")
    parser.add_argument("--sources", nargs="+", default=["ctich", "phe_sich"])
    parser.add_argument("--shifts", nargs="+", type=int, default=[-9, -6, -3, 3, 6])
    args = parser.parse_args(argv)
    for source in args.sources:
        config = load_config(args.recipe, [f'split.held_out_source="{source}"'])
        cache = Cache.open(config.cache_dir)
        rows = np.array([i for i, r in enumerate(cache.records) if r.source == source])
        images = np.asarray(cache.images[rows]).astype(np.float32)  # the held-out hospital, in memory
        local = np.arange(len(rows))
        labels = cache.labels[rows]
        patients = np.array([cache.records[i].patient for i in rows])
        training_rows = np.array([i for i, r in enumerate(cache.records)
                                  if r.source not in (source, "phantom")])
        reference = float(np.median(list(patient_levels(cache, training_rows).values())))
        own = patient_levels(cache, rows)
        per_patient = np.array([reference - own[p] for p in patients], np.float32)
        print(f"\n{source}: {len(own)} patients; brain level median {np.median(list(own.values())):.1f} HU "
              f"(p5-p95 {np.percentile(list(own.values()), 5):.1f}-{np.percentile(list(own.values()), 95):.1f}); "
              f"training hospitals' median {reference:.1f} HU")
        classes = [c for c in range(len(CLASSES)) if (labels[:, c] == 1).any()]
        for prefix in args.runs:
            run_config = load_config(args.recipe, [f'name="{prefix}_without_{source}"',
                                                   f'split.held_out_source="{source}"'])
            model, _ = load_trained(run_config)
            print(f"\n{prefix}_without_{source}\n")
            print("| input | " + " | ".join(CLASSES[c] for c in classes) + " |")
            print("|---|" + "---:|" * len(classes))
            as_is = predict(model, images, local)
            variants = [("as stored", as_is)]
            variants += [(f"{s:+d} HU", predict(model, images + s, local)) for s in args.shifts]
            standardised = predict(model, images + per_patient[:, None, None], local)
            variants.append(("per-patient brain level", standardised))
            for name, probabilities in variants:
                cells = [f"{roc_auc(labels[:, c], probabilities[:, c]):.3f}" for c in classes]
                print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
            cells = []
            for c in classes:
                diff = paired_difference(patients, labels[:, c], as_is[:, c], standardised[:, c])
                cells.append(f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]")
            print("| per-patient minus as stored | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
