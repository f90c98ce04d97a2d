"""The evaluation report: Markdown tables plus ROC and PR plots, generated, never hand-written."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from training.data.base import CLASSES  # noqa: E402


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(row: dict, key: str) -> str:
    ci = row.get(f"{key}_ci")
    return f"{_f(row[key])} [{_f(ci[0])}, {_f(ci[1])}]" if ci else _f(row[key])


def _plot(out: Path, y_true, y_prob, kind: str) -> Path:
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.5), dpi=110)
    for c, (name, ax) in enumerate(zip(CLASSES, axes.flat)):
        y = np.asarray(y_true)[:, c]
        if 0 < y.sum() < len(y):
            if kind == "roc":
                x, yy, _ = roc_curve(y, y_prob[:, c])
                ax.plot(x, yy)
                ax.plot([0, 1], [0, 1], ":", color="grey")
                ax.set(xlabel="1 - specificity", ylabel="sensitivity")
            else:
                precision, recall, _ = precision_recall_curve(y, y_prob[:, c])
                ax.plot(recall, precision)
                ax.axhline(y.mean(), ls=":", color="grey")
                ax.set(xlabel="recall", ylabel="precision")
        else:
            ax.text(0.5, 0.5, "no positives", ha="center", va="center")
        ax.set(title=f"{name} (n+={int(y.sum())})", xlim=(0, 1), ylim=(0, 1.02))
    fig.tight_layout()
    path = out / f"{kind}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out_dir, title: str, evaluation: dict, y_true, y_prob, presets: dict, curves: dict,
                 notes=(), extra_markdown: str = "") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_prob = np.asarray(y_prob)
    default = presets["default"]
    lines = [f"# {title}", "",
             f"{evaluation['n_slices']} slices, {evaluation['n_studies']} studies, {evaluation['n_patients']} patients "
             f"(held out by patient). Weighted log loss (RSNA metric): {_f(evaluation['log_loss'], 4)}.",
             "Intervals: 95% bootstrap over patients.", "",
             f"## Slice level (flags at the `{default}` preset)", "",
             "| class | positives | AUC [95% CI] | AP [95% CI] | threshold | precision | recall | specificity | F1 |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for name in CLASSES:
        r = evaluation["slice"][name]
        lines.append(f"| {name} | {r['n_pos']} | {_ci(r, 'auc')} | {_ci(r, 'ap')} | {_f(r['threshold'])} | "
                     f"{_f(r['precision'])} | {_f(r['recall'])} | {_f(r['specificity'])} | {_f(r['f1'])} |")
    lines += ["", "## Threshold presets", "", "| class | " + " | ".join(p for p in presets if p not in ("default", "notes"))
              + " |", "|---|" + "---:|" * (len(presets) - 2)]
    for name in CLASSES:
        values = [_f(presets[p][name]) for p in presets if p not in ("default", "notes")]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    lines += ["", f"## Study level (max over slices, `{default}` preset)", "",
              "| class | positive studies | studies | AUC [95% CI] | sensitivity | specificity |",
              "|---|---:|---:|---|---:|---:|"]
    for name in CLASSES:
        r = evaluation["study"][name]
        lines.append(f"| {name} | {r['n_pos']} | {r['n']} | {_ci(r, 'auc')} | {_f(r['recall'])} | "
                     f"{_f(r['specificity'])} |")
    _plot(out, y_true, y_prob, "roc")
    _plot(out, y_true, y_prob, "pr")
    lines += ["", "## Curves", "", "![ROC curves](roc.png)", "", "![Precision-recall curves](pr.png)", ""]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + extra_markdown)
    return path
