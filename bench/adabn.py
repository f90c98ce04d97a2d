"""AdaBN, measured where it matters: does re-estimating batch-norm statistics on the target hospital's own
slices help a model at a hospital it never saw? (issue 14's list of things to try)

    .venv/bin/python bench/adabn.py [--recipe two_hospitals_phantom_resnet18] [--sources phe_sich ctich]

For each held-out hospital it loads the recipe's leave-one-hospital-out run (``runs/<recipe>_without_<source>``,
trained without that hospital; its prepared cache must be there) and scores every slice of the hospital three ways:

- as trained: the batch-norm statistics of the training hospitals (what the viewer runs today);
- site AdaBN: statistics re-estimated on every slice of the held-out hospital (labels unused), as a site
  could do once with its own unlabelled studies;
- series AdaBN: statistics re-estimated on each patient's own slices only, as the viewer could do per series.

Prints the slice AUC of each class the hospital labels, with the positive slices in brackets.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ich_viewer.core.contract import CLASSES  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data.cache import Cache  # noqa: E402
from training.evaluate import load_trained  # noqa: E402
from training.metrics import roc_auc  # noqa: E402
from training.train import predict  # noqa: E402


@torch.no_grad()
def adapt_batch_norm(model: nn.Module, images: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> nn.Module:
    """A copy of ``model`` whose batch-norm running statistics are the plain average over ``rows`` (AdaBN)."""
    adapted = copy.deepcopy(model).eval()
    norms = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch, not an exponential one
        norm.train()  # only the norms: any dropout stays off
    for start in range(0, len(rows), batch_size):
        chunk = np.sort(rows[start:start + batch_size])
        adapted(torch.from_numpy(images[chunk].astype(np.float32))[:, None])
    return adapted.eval()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="two_hospitals_phantom_resnet18")
    parser.add_argument("--sources", nargs="+", default=["phe_sich", "ctich"])
    args = parser.parse_args(argv)
    print("| held-out hospital | batch-norm statistics | " + " | ".join(CLASSES) + " |")
    print("|---|---|" + "---:|" * len(CLASSES))
    for source in args.sources:
        config = load_config(args.recipe, [f'name="{args.recipe}_without_{source}"',
                                           f'split.held_out_source="{source}"'])
        cache = Cache.open(config.cache_dir)
        model, _ = load_trained(config)
        rows = np.array([i for i, r in enumerate(cache.records) if r.source == source])
        labels = cache.labels[rows]
        patients = np.array([cache.records[i].patient for i in rows])
        as_trained = predict(model, cache.images, rows)
        site = predict(adapt_batch_norm(model, cache.images, rows), cache.images, rows)
        series = np.zeros_like(as_trained)
        for patient in np.unique(patients):
            mine = np.flatnonzero(patients == patient)
            series[mine] = predict(adapt_batch_norm(model, cache.images, rows[mine]), cache.images, rows[mine])
        for name, probabilities in (("as trained", as_trained), ("site AdaBN", site), ("series AdaBN", series)):
            cells = []
            for c in range(len(CLASSES)):
                auc = roc_auc(labels[:, c], probabilities[:, c])
                positives = int((labels[:, c] == 1).sum())
                cells.append("n/a" if auc is None else f"{auc:.3f} ({positives})")
            print(f"| {source} ({len(np.unique(patients))} patients) | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
