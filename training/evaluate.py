"""Evaluate a trained run on its validation patients and write the model card and the report.

Outputs in ``<run>/eval/``: ``predictions.csv`` (per validation slice), ``evaluation.json``,
``card.json`` (the model card that ``export`` embeds), ``report.md`` with ``roc.png``/``pr.png``.
"""

from __future__ import annotations

import csv
import datetime
import json
from pathlib import Path

import numpy as np
import torch

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.model import sha256
from training.config import Config
from training.data.cache import Cache
from training.export import ContractGraph
from training.metrics import evaluate as evaluate_predictions
from training.model import build_model
from training.report import write_report
from training.thresholds import PRESETS, calibrate, curves
from training.train import predict, split_rows


#: The config sections that decide the weights and which patients they never saw. ``card`` and ``export`` only
#: describe or package a run, so they may change after training.
TRAINED_WITH = ("name", "seed", "data", "split", "model", "augment", "train", "pretrain")


def load_trained(config: Config) -> tuple[torch.nn.Module, dict]:
    """The run's weights, refused when ``config`` is not what they were trained with: evaluating a fold-0 model
    with ``split.fold=1`` scored training patients as held out, and a card recorded options never used."""
    path = config.run_dir / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: run `python -m training train --config ...` first")
    state = torch.load(path, map_location="cpu", weights_only=False)
    differ = _differences(state.get("config", {}), config.to_dict())
    if differ:
        raise ValueError(f"{path} was trained with other options ({', '.join(differ[:4])}"
                         f"{', ...' if len(differ) > 4 else ''}): use the config and --set options it was trained with")
    model = build_model(config)
    model.load_state_dict(state["model"])
    return model.eval(), state


def _differences(trained: dict, given: dict, prefix: str = "") -> list[str]:
    """The dotted names of the :data:`TRAINED_WITH` options whose values differ."""
    names = []
    for key in (TRAINED_WITH if not prefix else sorted(set(trained) | set(given))):
        a, b = trained.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(f"{prefix}{key}")
    return names


def checkpoint_sha256(config: Config) -> str:
    """The checkpoint file's SHA-256: the card written from it names it, and ``export`` checks it."""
    return sha256(config.run_dir / "checkpoint.pt")


@torch.no_grad()
def cam_scale(model: torch.nn.Module, images: np.ndarray, rows: np.ndarray, labels: np.ndarray,
              max_slices: int = 256) -> dict[str, float]:
    """Per class, the 99th percentile of the CAM peak over validation slices positive for it (all
    validation slices when too few are): the fixed scale on which the viewer shows CAMs."""
    graph = ContractGraph(model).eval()
    scale = {}
    for c, name in enumerate(CLASSES):
        pick = rows[labels[:, c] == 1] if (labels[:, c] == 1).sum() >= 5 else rows
        pick = np.sort(pick[:max_slices])
        peaks = []
        for start in range(0, len(pick), 32):
            hu = torch.from_numpy(images[pick[start:start + 32]].astype(np.float32))[:, None]
            peaks.append(graph(hu)[1][:, c].amax(dim=(1, 2)).numpy())
        value = float(np.percentile(np.concatenate(peaks), 99)) if peaks else 1.0
        scale[name] = value if value > 0 else 1.0
    return scale


def run_evaluation(config: Config, n_boot: int = 1000, out_of_fold: list[str | Path] = ()) -> Path:
    """Score the run's validation patients; or, with ``out_of_fold`` (the recipe's fold runs, already
    evaluated), pool their held-out predictions instead: every labelled patient scored once by a model that
    never saw it. That is how a run trained on every patient (``split.fold = -1``) gets its card's
    thresholds, curves and figures."""
    cache = Cache.open(config.cache_dir)
    model, state = load_trained(config)
    train_rows, val_rows = split_rows(cache, config)
    out = config.run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    if out_of_fold:
        records, labels, probs, split = pooled_out_of_fold(cache, config, out_of_fold)
        cam_rows = np.sort(np.concatenate([train_rows, val_rows]))  # no held-out patients: a display scale only
    elif len(val_rows):
        probs = predict(model, cache.images, val_rows)
        labels = cache.labels[val_rows].astype(np.int64)
        records, cam_rows = [cache.records[i] for i in val_rows], val_rows
        split = (f"patient-level: fold {config.split.fold} of {config.split.folds} stratified grouped folds "
                 f"(seed {config.split.seed}); no patient is on both sides")
        if config.split.held_out_source:
            split = (f"leave one hospital out: every patient of {config.split.held_out_source} held out, the model "
                     "trained on the other sources only")
    else:
        raise ValueError("this run trained on every patient, so none is held out: pass the recipe's fold runs "
                         "(--oof) to evaluate on their pooled out-of-fold predictions")
    patients, studies = [r.patient for r in records], [r.study for r in records]
    presets = calibrate(labels, probs, patients)
    operating = curves(labels, probs)
    default = presets[presets["default"]]
    evaluation = evaluate_predictions(labels, probs, patients, studies, default, n_boot=n_boot, seed=config.seed)
    _write_predictions(out / "predictions.csv", records, labels, probs)
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=1))
    card = make_card(config, state, model, evaluation, presets, operating,
                     cam_scale(model, cache.images, cam_rows, cache.labels[cam_rows]), split)
    (out / "card.json").write_text(json.dumps(card, indent=1))
    title = "pooled out-of-fold predictions" if out_of_fold else "validation on held-out patients"
    write_report(out, f"{config.name}: {title}", evaluation, labels, probs, presets, operating,
                 notes=list(presets.get("notes", [])), extra_markdown=_training_markdown(card))
    return out


def pooled_out_of_fold(cache: Cache, config: Config, runs: list[str | Path]):
    """The fold runs' held-out predictions as one set: (records, labels, probabilities, split sentence).

    Refused unless the runs hold out disjoint patients that together are exactly this run's labelled,
    validating patients (train-only sources never count)."""
    by_key = {r.key: r for r in cache.records}
    records, labels, probs, seen = [], [], [], {}
    for run in runs:
        path = Path(run) / "eval" / "predictions.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no predictions at {path}: evaluate that fold run first")
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["patient"] in seen and seen[row["patient"]] != str(run):
                    raise ValueError(f"{run} and {seen[row['patient']]} both hold out patient {row['patient']}: "
                                     "they are not folds of one cross-validation")
                seen[row["patient"]] = str(run)
                records.append(by_key[row["key"]])
                labels.append([int(row[f"label_{c}"]) for c in CLASSES])
                probs.append([float(row[f"prob_{c}"]) for c in CLASSES])
    everyone = {cache.records[i].patient for i in np.concatenate(split_rows(cache, config))
                if cache.records[i].source not in config.data.train_only}
    if set(seen) != everyone:
        raise ValueError(f"the out-of-fold runs hold out {len(set(seen))} patients, but this run's labelled "
                         f"patients are {len(everyone)}: pass every fold run of the recipe")
    split = (f"pooled out-of-fold: {len(runs)} patient-level fold runs ({', '.join(Path(r).name for r in runs)}), "
             f"each patient scored by a model that never saw it; the weights in this file were then trained on all "
             f"{len(everyone)} patients")
    return records, np.array(labels, np.int64), np.array(probs, np.float64), split


def make_card(config: Config, state: dict, model, evaluation: dict, presets: dict, operating: dict,
              cam_scales: dict, split: str) -> dict:
    windows = []
    width = model.preprocess.log_width.detach().exp().flatten().tolist()
    center = model.preprocess.center.detach().flatten().tolist()
    for w, c, wd in zip(config.windows, center, width):
        windows.append({"name": w.name, "center": round(c, 2), "width": round(wd, 2), "function": w.function,
                        "learned": w.learned})
    slice_metrics = evaluation["slice"]
    thresholds = {k: presets[k] for k in (*PRESETS, "default", "notes") if k in presets}
    return {
        "name": config.name, "version": config.export.version, "created": datetime.date.today().isoformat(),
        "architecture": config.model.arch, "license": config.export.license, "classes": list(CLASSES),
        "input": {"units": "HU", "size": [config.model.size, config.model.size], "clip": config.model.clip},
        "windows": windows, "head": config.model.head,
        "thresholds": thresholds, "threshold_rules": presets.get("rules", {}),
        "thresholds_unmet": presets.get("unmet", {}), "calibration": presets.get("calibration"),
        "slice_thickness_mm": config.card.slice_thickness_mm,
        "operating_curves": operating, "cam_scale": cam_scales,
        "validation": {
            "dataset": config.card.dataset, "citation": config.card.citation,
            "split": split,
            "slices": evaluation["n_slices"], "patients": evaluation["n_patients"],
            "auc": {c: slice_metrics[c]["auc"] for c in CLASSES},
            "auc_ci": {c: slice_metrics[c].get("auc_ci") for c in CLASSES},
            "ap": {c: slice_metrics[c]["ap"] for c in CLASSES},
            "f1": {c: slice_metrics[c]["f1"] for c in CLASSES},
            "study_level": {c: {k: evaluation["study"][c].get(k) for k in ("auc", "recall", "specificity", "n_pos", "n")}
                            for c in CLASSES},
            "log_loss": evaluation["log_loss"],
        },
        "training": {
            "data_sources": config.data.sources, "config": config.to_dict(), "seed": config.seed,
            "code_version": state.get("code_version"), "epochs": state.get("epoch"), "steps": state.get("step"),
            "hardware": state.get("hardware"), "world_size": state.get("world_size"),
            "wall_time_s": round(float(state.get("elapsed", 0.0)), 1), "torch": state.get("torch"),
            "checkpoint_sha256": checkpoint_sha256(config),
        },
        "intended_use": config.card.intended_use,
        "limitations": config.card.limitations,
    }


def _training_markdown(card: dict) -> str:
    t = card["training"]
    return (f"\n## Training\n\n- architecture {card['architecture']}, input {card['input']}, head {card['head']}\n"
            f"- epochs {t['epochs']} ({t['steps']} steps), {t['wall_time_s']} s on {t['hardware']} "
            f"(world size {t['world_size']}), torch {t['torch']}, code {t['code_version']}, seed {t['seed']}\n"
            f"- data sources: {json.dumps(t['data_sources'])}\n")


def _write_predictions(path: Path, records, labels: np.ndarray, probs: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["key", "patient", "study", "index", *[f"label_{c}" for c in CLASSES],
                         *[f"prob_{c}" for c in CLASSES]])
        for r, y, p in zip(records, labels, probs):
            writer.writerow([r.key, r.patient, r.study, r.index, *map(int, y), *(f"{v:.6f}" for v in p)])
