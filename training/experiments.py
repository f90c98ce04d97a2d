"""A table comparing runs on the same held-out patients (for the report's "what helped" section)."""

from __future__ import annotations

import json
from pathlib import Path

from training.data.base import CLASSES


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def comparison_markdown(runs: dict[str, Path], chosen: str) -> str:
    """``runs``: recipe (or run folder) name -> run folder holding ``eval/evaluation.json``."""
    lines = ["", "## Experiments", "",
             f"Bundled: `{chosen}`. Slice-level AUC per class (positive slices in brackets) and the RSNA weighted log loss (lower is better). "
             "Only rows with the same held-out set (patients, slices, positives per class) compare directly.", "",
             "| run | held-out patients / slices | " + " | ".join(CLASSES) + " | log loss | study AUC (any) |",
             "|---|---|" + "---:|" * (len(CLASSES) + 2)]
    for name, run in runs.items():
        path = Path(run) / "eval" / "evaluation.json"
        if not path.is_file():
            lines.append(f"| {name} | not evaluated |")
            continue
        ev = json.loads(path.read_text())
        aucs = " | ".join(f"{_fmt(ev['slice'][c]['auc'])} ({ev['slice'][c]['n_pos']})" for c in CLASSES)
        lines.append(f"| {name} | {ev['n_patients']} / {ev['n_slices']} | {aucs} | {ev['log_loss']:.4f} | "
                     f"{_fmt(ev['study']['any']['auc'])} |")
    return "\n".join(lines) + "\n"
