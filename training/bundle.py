"""The ``bundle`` step: the exported model becomes the viewer's bundled model, with its report.

Copies ``<run>/model.onnx`` to ``resources/models/<name>.onnx`` (or, when the recipe exports INT8,
``<run>/model.int8.onnx`` to ``<name>.int8.onnx``: 4x smaller and ~2x faster on a laptop CPU, its
AUC change on the validation patients reported beside it), writes ``manifest.json`` (SHA-256),
copies the evaluation report to ``training/reports/<name>/`` and appends checks on real CT from
other hospitals that the project holds (never used for training or tuning): the CQ500-CT-0 series
(read negative by two of three radiologists) and pydicom-data's ``693_J2KR.dcm`` (CQ500-CT-310, a
subdural hemorrhage). These run through the viewer's own engine, exactly as a user's study would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx

from ich_viewer.core.contract import CARD_KEY
from ich_viewer.core.model import sha256
from training.config import Config
from training.export import save_sealed
from training.external import external_checks

REPO = Path(__file__).resolve().parents[1]


def _int8_markdown(run_dir: Path) -> str:
    """The INT8 copy's AUC and speed beside FP32's, from the export step's summary."""
    summary = json.loads((run_dir / "export.json").read_text()).get("int8") or {}
    slices = ("on a sample of its training slices (this run trained on every patient: a check that quantisation "
              "keeps the ranking, not a measure of performance)" if summary.get("slices") == "training"
              else "on the same validation patients")
    return "\n".join([
        "", "## The bundled file is INT8", "",
        "Static INT8 quantisation (ONNX Runtime, per-channel 7-bit weights, calibrated on training slices). "
        f"Thresholds and curves above come from the FP32 weights; {slices}:", "",
        "| precision | mean AUC over classes with positives | ms per slice (export machine) | MB |",
        "|---|---:|---:|---:|",
        f"| FP32 | {summary.get('fp32_mean_auc')} | {summary.get('fp32_ms_per_slice')} | |",
        f"| INT8 | {summary.get('int8_mean_auc')} | {summary.get('int8_ms_per_slice')} | {summary.get('megabytes')} |",
        ""])


def add_to_card(path: Path, entries: dict) -> None:
    """Write ``entries`` into the card of the model at ``path`` and seal it again (same weights)."""
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key == CARD_KEY:
            prop.value = json.dumps({**json.loads(prop.value), **entries})
    save_sealed(proto, path)


def bundling_refusal(config: Config) -> str | None:
    """Why this run must not replace the viewer's bundled model (a test or smoke run), or None. The bundled model
    is replaced at most once per issue: a smoke run bundled by mistake would spend that."""
    if all(source.get("kind") == "phantom" for source in config.data.sources):
        return "it learned from synthetic phantoms only"
    if config.train.max_steps is not None:
        return f"its training stopped after {config.train.max_steps} optimiser steps (a test or smoke run)"
    card = config.run_dir / "eval" / "card.json"
    if card.is_file() and not json.loads(card.read_text())["validation"]["split"].startswith("pooled out-of-fold"):
        # the contract's curves and presets: every labelled patient, not one fold's 60 (subdural had 4 there)
        return ("its thresholds and curves come from one fold's patients, not pooled out-of-fold predictions "
                "(evaluate it with --oof and the recipe's fold runs)")
    return None


def run_bundle(config: Config, compare: list[str] = (), root: Path | None = None, cross_validation: list[str] = (),
               leave_one_out: list[str] = ()) -> dict:
    """Bundle the run's model into ``root`` (the repository; tests pass a scratch folder).

    ``compare``: other runs for the experiment table; ``cross_validation``: this recipe's runs on the other
    folds, for the out-of-fold table; ``leave_one_out``: its runs without one hospital each. All are recipe
    names or run folders. The external checks and the leave-one-hospital-out figures also go into the
    bundled file's card (``external_validation``), so the viewer's model dialog shows them. A smoke or test run
    (:func:`bundling_refusal`) is refused for the repository, before anything is written."""
    root = REPO if root is None else Path(root)
    if root.resolve() == REPO.resolve():
        if why := bundling_refusal(config):
            raise ValueError(f"{config.name} is not bundled into the viewer: {why}. To try the step, bundle it into "
                             "a scratch folder (run_bundle's root)")
    source = _exported(config)
    models = root / "resources" / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / source.name.replace("model", config.name, 1)
    shutil.copy(source, target)
    numbers = write_full_report(config, target, root / "training" / "reports", compare, cross_validation, leave_one_out)
    add_to_card(target, {"external_validation": numbers})
    digest = sha256(target)
    manifest = {"models": [{"file": target.name, "sha256": digest, "precision": "int8" if config.export.int8 else "fp32",
                            "config": f"training/configs/{config.name}.toml",
                            "reproduce": (f"bash training/reproduce.sh {config.name}" if config.split.fold == -1 else
                                          f"python -m training all --config {config.name} && "
                                          f"python -m training bundle --config {config.name}")}]}
    (models / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {"model": str(target.relative_to(root)), "sha256": digest, "megabytes": round(target.stat().st_size / 2**20, 1),
            "report": "training/reports/report.md"}


def run_report(config: Config, compare: list[str] = (), root: Path = REPO, cross_validation: list[str] = (),
               leave_one_out: list[str] = ()) -> dict:
    """The bundle's report for a run that is not bundled (an experiment, or a candidate waiting for its
    decision): ``training/reports/<name>/``, with the external checks run on the run's own exported file."""
    out = root / "training" / "reports" / config.name
    write_full_report(config, _exported(config), out, compare, cross_validation, leave_one_out)  # writes its json too
    return {"report": str((out / "report.md").relative_to(root))}


def _exported(config: Config) -> Path:
    source = config.run_dir / ("model.int8.onnx" if config.export.int8 else "model.onnx")
    if not source.is_file():
        raise FileNotFoundError(f"no exported model at {source}: run `python -m training export` first")
    return source


def write_full_report(config: Config, model_file: Path, reports: Path, compare=(), cross_validation=(),
                      leave_one_out=()) -> dict:
    """``reports``/report.md (the evaluation's, then leave-one-hospital-out, cross-validation, comparisons,
    INT8 and the external checks of ``model_file``) with its plots; returns the external numbers."""
    reports.mkdir(parents=True, exist_ok=True)
    markdown, numbers = external_checks(model_file, reports=reports)
    if leave_one_out:
        from training.crossval import leave_one_hospital_out_markdown

        loho_markdown, numbers["leave_one_hospital_out"] = leave_one_hospital_out_markdown(
            {folder.name: folder for folder in _run_folders(leave_one_out)})
        markdown = loho_markdown + markdown
    for name in ("report.md", "roc.png", "pr.png"):
        shutil.copy(config.run_dir / "eval" / name, reports / name)
    if config.export.int8:
        markdown = _int8_markdown(config.run_dir) + markdown
    if compare:
        from training.experiments import comparison_markdown

        markdown = comparison_markdown(_named_runs(config, compare), config.name) + markdown
    if cross_validation:
        from training.crossval import cross_validation_markdown

        # a run trained on every patient holds none out: its report already is the pooled out-of-fold one
        folds = (_named_runs(config, cross_validation) if config.split.fold != -1
                 else {folder.name: folder for folder in _run_folders(cross_validation)})
        markdown = cross_validation_markdown(folds) + markdown
    with open(reports / "report.md", "a") as f:
        f.write(markdown)
    (reports / "external_checks.json").write_text(json.dumps(numbers, indent=1))
    return numbers


def _named_runs(config: Config, names: list[str]) -> dict[str, Path]:
    """The bundled run first, then the named ones, each under its folder name (a table row)."""
    return {config.name: config.run_dir, **{folder.name: folder for folder in _run_folders(names)}}


def _run_folders(names: list[str]) -> list[Path]:
    """Recipes, or run folders (a recipe run with --set overrides), resolved to run folders; the tables name
    runs by folder, so two folders with one name would silently become one row."""
    from training.config import load_config

    folders = [Path(name) if Path(name).is_dir() else load_config(name).run_dir for name in names]
    names_seen = [folder.name for folder in folders]
    duplicates = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if duplicates:
        raise ValueError(f"two runs share the folder name {', '.join(duplicates)}: rename one (--set name=...)")
    return folders
