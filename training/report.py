"""The evaluation report: Markdown tables plus ROC and PR plots, generated, never hand-written."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training machines have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from ich_viewer.core.contract import CLASSES  # noqa: E402
from ich_viewer.core.thresholds import read_curve  # noqa: E402 - the report reads curves as the viewer does
from training.metrics import known  # noqa: E402

from training.thresholds import META_KEYS as _META  # entries of the presets that are not presets


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(row: dict, key: str) -> str:
    ci = row.get(f"{key}_ci")
    return f"{_f(row.get(key))} [{_f(ci[0])}, {_f(ci[1])}]" if ci else _f(row.get(key))


def _plot(out: Path, y_true, y_prob, presets: dict, curves: dict, kind: str) -> Path:
    """One panel per class; the preset operating points (read off the stored curves) are marked."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, float)
    names = [p for p in presets if p not in _META]
    fig, axes = plt.subplots(2, 3, figsize=(9, 5.6), dpi=150)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.94, wspace=0.3, hspace=0.42)  # tight_layout: 3x slower
    for c, (name, ax) in enumerate(zip(CLASSES, axes.flat)):
        y, p = known(y_true[:, c], y_prob[:, c])  # unknown labels are not negatives
        if 0 < y.sum() < len(y):
            if kind == "roc":
                x, yy, _ = roc_curve(y, p)
                ax.plot(x, yy, lw=1.2)
                ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
                ax.set_xlabel("1 - specificity", fontsize=7)
                ax.set_ylabel("sensitivity", fontsize=7)
            else:
                precision, recall, _ = precision_recall_curve(y, p)
                ax.plot(recall, precision, lw=1.2)
                ax.axhline(y.mean(), ls=":", color="grey", lw=0.8)  # chance level = prevalence
                ax.set_xlabel("recall", fontsize=7)
                ax.set_ylabel("precision", fontsize=7)
            for preset, marker in zip(names, "osD^v"):
                if name in curves and name in presets[preset] and name not in presets.get("unmet", {}).get(preset, {}):
                    point = read_curve(curves[name], presets[preset][name])
                    xy = ((1 - point["specificity"], point["recall"]) if kind == "roc"
                          else (point["recall"], point["precision"]))
                    if None not in xy:  # no precision where no positive is found
                        ax.plot(*xy, marker, ms=4, label=preset)
            if c == 0 and names:
                ax.legend(fontsize=6, loc="lower right" if kind == "roc" else "lower left")
        else:
            ax.text(0.5, 0.5, "one label only", ha="center", va="center", fontsize=8)
        ax.set_title(f"{name} (n+={int(y.sum())})", fontsize=8)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xticks=(0, 0.5, 1), yticks=(0, 0.5, 1))
        ax.tick_params(labelsize=6)
    path = out / f"{kind}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out_dir, title: str, evaluation: dict, y_true, y_prob, presets: dict, curves: dict,
                 notes=(), extra_markdown: str = "") -> Path:
    """Write ``report.md`` with ``roc.png`` and ``pr.png`` beside it into ``out_dir``; returns the .md path.

    Flags in the tables are those ``evaluation`` was computed at (the caller passes the default preset).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    default = presets.get("default", "balanced")
    names = [p for p in presets if p not in _META]
    lines = [f"# {title}", "",
             f"{evaluation['n_slices']} slices, {evaluation['n_studies']} studies, {evaluation['n_patients']} "
             f"patients. Weighted log loss (RSNA 2019 metric): {_f(evaluation['log_loss'], 4)}.",
             "Intervals: 95% percentile bootstrap resampling patients.", "",
             f"## Slice level (flags at the `{default}` preset)", "",
             "| class | positives | slices | AUC [95% CI] | AP [95% CI] | threshold | precision | recall | "
             "specificity | F1 |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for name in CLASSES:
        r = evaluation["slice"][name]
        lines.append(f"| {name} | {r['n_pos']} | {r['n']} | {_ci(r, 'auc')} | {_ci(r, 'ap')} | "
                     f"{_f(r.get('threshold'))} | {_f(r['precision'])} | {_f(r['recall'])} | "
                     f"{_f(r['specificity'])} | {_f(r['f1'])} |")
    rules, unmet, calibration = presets.get("rules", {}), presets.get("unmet", {}), presets.get("calibration", {})
    lines += ["", "## Threshold presets", "", f"Default: `{default}`. "
              + " ".join(f"`{p}`: {rules[p]}." for p in names if p in rules)
              + " \"not met\": the rule cannot be met for that class, which the viewer then does not flag.", "",
              "| class | " + " | ".join(names) + (" | calibration |" if calibration else " |"),
              "|---|" + "---:|" * len(names) + ("---|" if calibration else "")]
    for name in CLASSES:
        cells = ["not met" if name in unmet.get(p, {}) else _f(presets[p].get(name), 4) for p in names]
        lines.append(f"| {name} | " + " | ".join(cells) + (f" | {calibration[name]} |" if calibration else " |"))
    lines += ["", f"## Study level (max over slices, `{default}` preset)", "",
              "| class | positive studies | studies | AUC [95% CI] | sensitivity | specificity |",
              "|---|---:|---:|---|---:|---:|"]
    for name in CLASSES:
        r = evaluation["study"][name]
        lines.append(f"| {name} | {r['n_pos']} | {r['n']} | {_ci(r, 'auc')} | {_f(r['recall'])} | "
                     f"{_f(r['specificity'])} |")
    _plot(out, y_true, y_prob, presets, curves, "roc")
    _plot(out, y_true, y_prob, presets, curves, "pr")
    lines += ["", "## Curves", "", "![ROC curves](roc.png)", "", "![Precision-recall curves](pr.png)", ""]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + extra_markdown)
    return path
