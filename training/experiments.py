"""A table comparing runs on the same held-out patients (for the report's "what helped" section)."""

from __future__ import annotations

import json
from pathlib import Path

from training.data.base import CLASSES


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def comparison_markdown(runs: dict[str, Path], chosen: str) -> str:
    """``runs``: recipe name -> run folder holding ``eval/evaluation.json``."""
    lines = ["", "## Experiments on the same held-out patients", "",
             f"Bundled: `{chosen}`. Slice-level AUC per class and the RSNA weighted log loss (lower is better).", "",
             "| recipe | " + " | ".join(CLASSES) + " | log loss | study AUC (any) |",
             "|---|" + "---:|" * (len(CLASSES) + 2)]
    for name, run in runs.items():
        path = Path(run) / "eval" / "evaluation.json"
        if not path.is_file():
            lines.append(f"| {name} | not evaluated |")
            continue
        ev = json.loads(path.read_text())
        aucs = " | ".join(_fmt(ev["slice"][c]["auc"]) for c in CLASSES)
        lines.append(f"| {name} | {aucs} | {ev['log_loss']:.4f} | {_fmt(ev['study']['any']['auc'])} |")
    return "\n".join(lines) + "\n"
