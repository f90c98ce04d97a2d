"""False alarms on normal CT from other hospitals, at equal sensitivity: a fair way to compare two recipes.

    .venv/bin/python bench/normal_flags.py [--runs PREFIX ...] [--sources ctich phe_sich] [--recall 0.8 0.9]

A run's probabilities are not comparable with another's (sampling and training length move them), so a fixed
threshold says little. For each ``runs/<PREFIX>_without_<source>`` (trained without that hospital, evaluated on
it) this finds the "any" threshold at which the run finds a given share of the left-out hospital's positive
slices, and prints the share of the 155 ``rsna-unlabelled`` slices (other hospitals, about 98% normal) at or
above it. Lower is better at the same recall. A run whose pretraining saw ``rsna-unlabelled`` (SimCLR with
``pretrain.dicom_folders``) has seen these slices, without labels: its figure is not a measure on unseen CT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ich_viewer  # noqa: E402
from bench.paired_auc import read_predictions  # noqa: E402
from bench.tta_ensemble import external_probabilities  # noqa: E402
from ich_viewer.core.volume import read_volume  # noqa: E402
from training.config import load_config  # noqa: E402
from training.evaluate import load_trained  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def threshold_at_recall(labels: np.ndarray, probabilities: np.ndarray, recall: float) -> float:
    """The highest threshold whose flags (probability >= threshold) find at least ``recall`` of the positives."""
    positives = np.sort(probabilities[labels == 1])[::-1]
    if not positives.size:
        raise ValueError("no positive slice to set a recall on")
    return float(positives[int(np.ceil(recall * positives.size)) - 1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["two_hospitals_phantom_resnet18"])
    parser.add_argument("--recipe", default="two_hospitals_phantom_resnet18")
    parser.add_argument("--sources", nargs="+", default=["ctich", "phe_sich"])
    parser.add_argument("--recall", nargs="+", type=float, default=[0.8, 0.9])
    parser.add_argument("--normals", type=Path, default=DATA / "rsna-unlabelled")
    args = parser.parse_args(argv)
    normals = [read_volume(s).astype(np.float32) for s in ich_viewer.load(args.normals).series]
    print(f"`{args.normals.name}` ({sum(map(len, normals))} slices) flagged for \"any\" at the threshold that finds "
          "the given share of the left-out hospital's positive slices\n")
    print("| run | left out | " + " | ".join(f"recall {r:.0%}: threshold, normal flagged" for r in args.recall) + " |")
    print("|---|---|" + "---|" * len(args.recall))
    for source in args.sources:
        for prefix in args.runs:
            name = f"{prefix}_without_{source}"
            config = load_config(args.recipe, [f'name="{name}"', f'split.held_out_source="{source}"'])
            held_out = read_predictions(REPO / "runs" / name)
            labels, probabilities = held_out["label_any"].astype(int), held_out["prob_any"].astype(float)
            normal = external_probabilities(load_trained(config)[0], normals)[:, 0]
            cells = []
            for recall in args.recall:
                threshold = threshold_at_recall(labels, probabilities, recall)
                cells.append(f"{threshold:.3f}, {np.mean(normal >= threshold):.1%}")
            print(f"| {prefix} | {source} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
