"""Test-time flips and the fold models as an ensemble: do they help at hospitals the model never saw?
(issue 14's list of things to try)

    .venv/bin/python bench/tta_ensemble.py [--recipe two_hospitals_phantom_resnet18]

Two measurements, both from the recipe's existing runs (their checkpoints and prepared cache must be in runs/):

1. Test-time flip, where a held-out hospital's labels say whether it helps: each leave-one-hospital-out run
   (``runs/<recipe>_without_<source>``) scores every slice of its held-out hospital as trained, and as the mean
   of the slice and its left-right mirror. Slice AUC per class, positive slices in brackets.
2. The fold models as an ensemble, where no labels exist but the normal-study flag rate does: the three fold runs
   (``runs/<recipe>_f<k>``, each trained on two thirds of the patients), their mean, and the run on every patient
   (the bundled model's FP32 weights) on `rsna-unlabelled` (about 98% normal) and on `693_J2KR.dcm`
   (a subdural). Flagged at the bundled card's balanced thresholds (which come from the fold runs' pooled
   out-of-fold predictions; a class the card does not flag counts as not flagged).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ich_viewer  # noqa: E402
from ich_viewer.core.contract import CLASSES  # noqa: E402
from ich_viewer.core.model import IchModel  # noqa: E402
from ich_viewer.core.thresholds import Thresholds  # noqa: E402
from ich_viewer.core.volume import read_volume  # noqa: E402
from ich_viewer.paths import models_dir  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data.cache import Cache  # noqa: E402
from training.evaluate import load_trained  # noqa: E402
from training.metrics import roc_auc  # noqa: E402
from training.train import predict  # noqa: E402

DATA = REPO.parent / "shared" / "data"


@torch.no_grad()
def flip_averaged(model: torch.nn.Module, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The mean probability of each slice and its left-right mirror."""
    mirrored = np.ascontiguousarray(images[np.sort(rows)][..., ::-1])
    order = np.argsort(np.argsort(rows))
    return (predict(model, images, rows) + predict(model, mirrored, np.arange(len(rows)))[order]) / 2


def auc_cells(labels: np.ndarray, probabilities: np.ndarray) -> list[str]:
    cells = []
    for c in range(len(CLASSES)):
        auc = roc_auc(labels[:, c], probabilities[:, c])
        cells.append("" if auc is None else f"{auc:.3f} ({int((labels[:, c] == 1).sum())})")
    return cells


def flips(recipe: str) -> None:
    print("| held-out hospital | input | " + " | ".join(CLASSES) + " |")
    print("|---|---|" + "---:|" * len(CLASSES))
    for source in ("phe_sich", "ctich"):
        config = load_config(recipe, [f'name="{recipe}_without_{source}"', f'split.held_out_source="{source}"'])
        cache = Cache.open(config.cache_dir)
        model, _ = load_trained(config)
        rows = np.array([i for i, r in enumerate(cache.records) if r.source == source])
        labels = cache.labels[rows]
        for name, p in (("as trained", predict(model, cache.images, rows)),
                        ("mean with its mirror", flip_averaged(model, cache.images, rows))):
            print(f"| {source} | {name} | " + " | ".join(auc_cells(labels, p)) + " |", flush=True)


@torch.no_grad()
def external_probabilities(model: torch.nn.Module, volumes: list[np.ndarray]) -> np.ndarray:
    model.eval()
    return np.concatenate([torch.sigmoid(model(torch.from_numpy(v)[:, None])).numpy() for v in volumes])


def ensemble(recipe: str) -> None:
    folds = load_config(recipe).split.folds
    models = {f"fold {k}": load_trained(load_config(recipe, [f'name="{recipe}_f{k}"', f"split.fold={k}"]))[0]
              for k in range(folds)}
    every = load_trained(load_config(recipe, ["split.fold=-1"]))[0]
    normals = [read_volume(s).astype(np.float32) for s in ich_viewer.load(DATA / "rsna-unlabelled").series]
    from pydicom.data import get_testdata_file

    subdural = [read_volume(ich_viewer.load(get_testdata_file("693_J2KR.dcm", download=False)).series[0])
                .astype(np.float32)]
    balanced = Thresholds(IchModel.bundled(models_dir()).card, "balanced").as_array()
    results = {name: (external_probabilities(m, normals), external_probabilities(m, subdural)[0])
               for name, m in models.items()}
    results["mean of the folds"] = tuple(np.mean([r[i] for r in results.values()], axis=0) for i in (0, 1))
    results["every patient (bundled, FP32)"] = (external_probabilities(every, normals),
                                               external_probabilities(every, subdural)[0])
    print(f"\n`rsna-unlabelled` ({sum(map(len, normals))} slices): share flagged at the bundled balanced thresholds; "
          "then `693_J2KR.dcm`'s probabilities (flagged in bold)\n")
    print("| model | " + " | ".join(CLASSES) + " | 693_J2KR: " + " | ".join(CLASSES) + " |")
    print("|---|" + "---:|" * (2 * len(CLASSES)))
    for name, (normal, j2kr) in results.items():
        rates = [f"{100 * (normal[:, c] >= balanced[c]).mean():.1f}%" for c in range(len(CLASSES))]
        probs = [f"**{v:.3f}**" if v >= t else f"{v:.3f}" for v, t in zip(j2kr, balanced)]
        print(f"| {name} | " + " | ".join(rates + probs) + " |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="two_hospitals_phantom_resnet18")
    args = parser.parse_args(argv)
    flips(args.recipe)
    ensemble(args.recipe)


if __name__ == "__main__":
    main()
