"""A table comparing runs on the same held-out patients (for the report's "what helped" section)."""

from __future__ import annotations

import json
from pathlib import Path

from ich_viewer.core.contract import CLASSES


def fmt_metric(value: float | None) -> str:
    """A metric to 3 decimals, or n/a where it is undefined (e.g. an AUC without positives)."""
    return "n/a" if value is None else f"{value:.3f}"


def comparison_markdown(runs: dict[str, Path], chosen: str) -> str:
    """``runs``: recipe (or run folder) name -> run folder holding ``eval/evaluation.json``."""
    lines = ["", "## Experiments", "",
             f"Bundled: `{chosen}`. Slice-level AUC per class (positive slices in brackets) and the RSNA weighted log loss (lower is better). "
             "Only rows with the same held-out set (patients, slices, positives per class) compare directly.", "",
             "| run | held-out patients / slices | " + " | ".join(CLASSES) + " | log loss | study AUC (any) |",
             "|---|---|" + "---:|" * (len(CLASSES) + 2)]
    evaluations = {}
    for name, run in runs.items():
        path = Path(run) / "eval" / "evaluation.json"
        if not path.is_file():
            lines.append(f"| {name} | not evaluated |")
            continue
        ev = evaluations[name] = json.loads(path.read_text())
        aucs = " | ".join(f"{fmt_metric(ev['slice'][c]['auc'])} ({ev['slice'][c]['n_pos']})" for c in CLASSES)
        lines.append(f"| {name} | {ev['n_patients']} / {ev['n_slices']} | {aucs} | {ev['log_loss']:.4f} | "
                     f"{fmt_metric(ev['study']['any']['auc'])} |")
    return "\n".join(lines + _differences(evaluations)) + "\n"


def _differences(evaluations: dict[str, dict]) -> list[str]:
    """In words, per run: what it changed against the first run evaluated on the same held-out set."""
    first_of: dict[tuple, str] = {}
    lines = []
    for name, ev in evaluations.items():
        key = (ev["n_patients"], ev["n_slices"], tuple(ev["slice"][c]["n_pos"] for c in CLASSES))
        base = first_of.setdefault(key, name)
        if base == name:
            continue
        ref = evaluations[base]
        delta = {c: ev["slice"][c]["auc"] - ref["slice"][c]["auc"] for c in CLASSES
                 if ev["slice"][c]["auc"] is not None and ref["slice"][c]["auc"] is not None}
        better = ", ".join(f"{c} {d:+.3f}" for c, d in delta.items() if d >= 0.01) or "nothing"
        worse = ", ".join(f"{c} {d:+.3f}" for c, d in delta.items() if d <= -0.01) or "nothing"
        lines.append(f"- `{name}` against `{base}` (same held-out set): slice AUC higher on {better}; "
                     f"lower on {worse}; log loss {ev['log_loss']:.4f} vs {ref['log_loss']:.4f}.")
    return ["", "Against the first run on the same held-out set (differences under 0.01 left out):", "", *lines] \
        if lines else []
