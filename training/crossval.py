"""Out-of-fold summary of one recipe trained once per patient-level fold (the report's cross-validation section).

One fold's held-out AUC depends heavily on which few patients it holds, above all for the rare
subtypes. Every fold's run scores patients its model never saw,
so together they score every patient once: the per-fold spread says how much one split can mislead,
and the pooled out-of-fold AUC (with a 95% interval over patients) is the estimate to quote.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ich_viewer.core.contract import CLASSES
from training.experiments import fmt_metric
from training.metrics import auc_or_none, bootstrap_ci, study_level


def read_predictions(run: str | Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """``eval/predictions.csv`` of a run: patients, studies, labels [N,6] (-1 = unknown) and probabilities [N,6]."""
    path = Path(run) / "eval" / "predictions.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no predictions at {path}: run `python -m training evaluate` for it first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([[int(r[f"label_{c}"]) for c in CLASSES] for r in rows], np.int8).reshape(-1, len(CLASSES))
    probs = np.array([[float(r[f"prob_{c}"]) for c in CLASSES] for r in rows], np.float64).reshape(-1, len(CLASSES))
    return [r["patient"] for r in rows], [r["study"] for r in rows], labels, probs


ANY = CLASSES.index("any")  # the study column


def _cell(value: float | None, n_pos: int) -> str:
    return f"{fmt_metric(value)} ({n_pos})"


def _study_auc(studies, labels, probs) -> float | None:
    """AUC of "any" per study (max over its slices)."""
    _, study_true, study_prob = study_level(studies, labels, probs)
    return auc_or_none(study_true[:, ANY], study_prob[:, ANY])


def _check_disjoint(folds: dict[str, tuple]) -> None:
    seen: dict[str, str] = {}
    for name, (patients, *_rest) in folds.items():
        for patient in set(patients):
            if patient in seen:
                raise ValueError(f"`{name}` and `{seen[patient]}` both hold out the same patients: they are not "
                                 "folds of one cross-validation")
            seen[patient] = name


def _spread(values: list[float]) -> str:
    return "n/a" if not values else f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f}, {len(values)})"


def cross_validation_markdown(runs: dict[str, Path], n_boot: int = 1000) -> str:
    """``runs``: name -> run folder, one per fold of the same recipe (their held-out patients must not overlap)."""
    folds = {name: read_predictions(folder) for name, folder in runs.items()}
    _check_disjoint(folds)
    lines = ["", "## Cross-validation", "",
             f"The recipe trained once per patient-level fold ({len(runs)} runs). Each row scores only "
             "patients its model never saw; slice AUC per class (positive slices in brackets). The pooled row "
             "ranks every run's held-out slices together, with a 95% interval from resampling patients. It mixes "
             "several models' calibrations, and folds without positives of a class still add their negatives, "
             "so it can be well below the mean over folds. A card made with `evaluate --oof` takes its thresholds "
             "and curves from this pooled set.", "",
             "| run | held-out patients / slices | " + " | ".join(CLASSES) + " | study AUC (any) |",
             "|---|---|" + "---:|" * (len(CLASSES) + 1)]
    per_fold = {c: [] for c in CLASSES}
    study_aucs = []
    for name, (patients, studies, labels, probs) in folds.items():
        aucs = [auc_or_none(labels[:, k], probs[:, k]) for k in range(len(CLASSES))]
        for c, a in zip(CLASSES, aucs):
            if a is not None:
                per_fold[c].append(a)
        study_auc = _study_auc(studies, labels, probs)
        if study_auc is not None:
            study_aucs.append(study_auc)
        cells = " | ".join(_cell(a, int((labels[:, k] == 1).sum())) for k, a in enumerate(aucs))
        lines.append(f"| {name} | {len(set(patients))} / {len(patients)} | {cells} | {fmt_metric(study_auc)} |")
    lines.append("| mean over folds (min-max, folds with positives) | | "
                 + " | ".join(_spread(per_fold[c]) for c in CLASSES) + f" | {_spread(study_aucs)} |")
    patients = [p for fold in folds.values() for p in fold[0]]
    studies = [s for fold in folds.values() for s in fold[1]]
    labels = np.concatenate([fold[2] for fold in folds.values()])
    probs = np.concatenate([fold[3] for fold in folds.values()])
    pooled = []
    for k in range(len(CLASSES)):
        auc = auc_or_none(labels[:, k], probs[:, k])
        ci = bootstrap_ci(patients, labels[:, k], probs[:, k], auc_or_none, n_boot=n_boot) if auc is not None else None
        interval = "" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        pooled.append(f"{fmt_metric(auc)}{interval} ({int((labels[:, k] == 1).sum())})")
    lines.append(f"| pooled out-of-fold [95% CI] | {len(set(patients))} / {len(patients)} | " + " | ".join(pooled)
                 + f" | {fmt_metric(_study_auc(studies, labels, probs))} |")
    return "\n".join(lines) + "\n"


def leave_one_hospital_out_markdown(runs: dict[str, Path]) -> tuple[str, dict]:
    """The headline table: each run trained without one hospital and scored on all of it (its labelled
    classes only: PHE-SICH labels any and intraparenchymal). ``runs``: name -> evaluated run folder."""
    import json

    lines = ["", "## Leave one hospital out (the headline)", "",
             "Each run is the recipe trained without one hospital, then scored on every patient of that hospital: "
             "how the model does at a hospital it never saw. Slice AUC [95% CI over patients] (positive slices).", "",
             "| held-out hospital | patients / slices | any | intraparenchymal | study AUC (any) |",
             "|---|---|---:|---:|---:|"]
    numbers = {}
    for name, folder in runs.items():
        folder = Path(folder)
        evaluation = json.loads((folder / "eval" / "evaluation.json").read_text())
        card = json.loads((folder / "eval" / "card.json").read_text())
        held_out = card["training"]["config"]["split"]["held_out_source"]
        cells, entry = [], {"run": name, "patients": evaluation["n_patients"], "slices": evaluation["n_slices"]}
        for c in ("any", "intraparenchymal"):
            r = evaluation["slice"][c]
            ci = r.get("auc_ci")
            cells.append(f"{fmt_metric(r['auc'])}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + f" ({r['n_pos']})")
            entry[c] = {"auc": r["auc"], "auc_ci": ci, "positives": r["n_pos"]}
        entry["study_auc_any"] = evaluation["study"]["any"]["auc"]
        numbers[held_out] = entry
        lines.append(f"| {held_out} (`{name}`) | {evaluation['n_patients']} / {evaluation['n_slices']} | "
                     f"{' | '.join(cells)} | {fmt_metric(entry['study_auc_any'])} |")
    return "\n".join(lines) + "\n", numbers
