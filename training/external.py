"""Real CT the project holds but never trains or tunes on, through the viewer's own engine (the bundle step).

- ``rsna-unlabelled``: 155 single slices of 155 patients from other hospitals and scanners, non-contrast,
  about 98% expected normal: the **normal-study flag rate**, per class and preset, is the share of them the
  viewer flags (classes it does not flag, not calibrated or with an unmet rule, count as not flagged).
- CQ500-CT-0 (238 slices of 0.625 mm, contrast-enhanced, read normal by two of three radiologists): what it
  gets slice by slice, as slabs of the card's thickness, and as the viewer shows it (outside the intended use).
- pydicom-data's ``693_J2KR.dcm`` (CQ500-CT-310, a large subdural hemorrhage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ich_viewer
from ich_viewer.core import intended_use
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import IchModel
from ich_viewer.core.slabs import plan_for_series
from ich_viewer.core.thresholds import Thresholds
from ich_viewer.core.volume import read_volume

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _table(header: str, rows: list[tuple[str, list]]) -> list[str]:
    return [f"| {header} | " + " | ".join(CLASSES) + " |", "|---|" + "---:|" * len(CLASSES),
            *[f"| {name} | " + " | ".join(map(str, cells)) + " |" for name, cells in rows]]


def _viewer_thresholds(model: IchModel) -> dict[str, np.ndarray]:
    """Per preset, the thresholds the viewer flags at by default (infinite for a class it does not flag)."""
    return {name: Thresholds(model.card, name).as_array() for name in model.card.presets}


def normal_flag_rates(model: IchModel, folder: Path) -> tuple[list[str], dict]:
    """The share of ``folder``'s slices flagged per class at each preset, as the viewer flags them."""
    probabilities, outside = [], 0
    for path in sorted(folder.rglob("*.dcm")):
        series = ich_viewer.load(path).series[0]
        if intended_use.check(series).outside:
            outside += 1
            continue
        probabilities.append(predict_series(model, read_volume(series)).probabilities[0])
    probabilities = np.array(probabilities)
    rates = {name: dict(zip(CLASSES, ((probabilities >= t).mean(0)).round(4).tolist()))
             for name, t in _viewer_thresholds(model).items()}
    rows = [(f"flagged, {name}", [f"{100 * rates[name][c]:.1f}%" for c in CLASSES]) for name in rates]
    rows.append(("median probability", [f"{v:.3f}" for v in np.median(probabilities, 0)]))
    lines = [f"Normal-study flag rate: `rsna-unlabelled`, {len(probabilities)} single slices of as many patients from "
             "other hospitals and scanners (non-contrast, about 98% expected normal; "
             f"{outside} outside the intended use by its header). Share flagged as the viewer flags them (a class "
             "not calibrated, or whose preset rule cannot be met, is not flagged):", "", *_table("", rows), ""]
    return lines, {"slices": len(probabilities), "outside_intended_use": outside, "flag_rate": rates}


def cq500_checks(model: IchModel, folder: Path, reports: Path) -> tuple[list[str], dict]:
    series = ich_viewer.load(folder).series[0]
    volume = read_volume(series)
    use = intended_use.check(series)
    plan = plan_for_series(series, model.card.slice_thickness_mm)
    thin = predict_series(model, volume).probabilities
    slabs = predict_series(model, volume, slabs=plan).probabilities if plan is not None else thin
    numbers: dict = {"slices": len(series), "intended_use": use.as_dict(),
                     "slabs": plan.as_dict() if plan is not None else None, "flagged": {}}
    rows = []
    for name, t in _viewer_thresholds(model).items():
        for label, p in (("thin slices", thin), ("slabs", slabs)):
            counts = [int((p[:, c] >= t[c]).sum()) for c in range(len(CLASSES))]
            numbers["flagged"].setdefault(name, {})[label] = dict(zip(CLASSES, counts))
            rows.append((f"{name}, {label}, intended-use check off", counts))
        rows.append((f"{name}, as the viewer shows it", [0 if use.outside else "see slabs"] * len(CLASSES)))
    rows.append(("max probability, slabs", [f"{v:.3f}" for v in slabs.max(0)]))
    numbers["max_probability"] = dict(zip(CLASSES, map(float, slabs.max(0))))
    np.savetxt(reports / "cq500_ct0_probabilities.csv", slabs, fmt="%.5f", delimiter=",", header=",".join(CLASSES),
               comments="")
    lines = [f"CQ500-CT-0 ({len(series)} slices, 0.625 mm; two of three radiologists read no hemorrhage, one read ICH "
             f"and subarachnoid). Intended-use check: {use.sentence or 'within'}"
             + (f" ({'; '.join(use.evidence)})" if use.evidence else "") + ". "
             + (f"The model is {plan.describe()}." if plan else "No slabs (the card states no thickness)."), "",
             "Slices flagged:", "", *_table("preset, input", rows), "",
             "Per-slice probabilities (slabs): `cq500_ct0_probabilities.csv` (slice order, inferior to superior).", ""]
    return lines, numbers


def j2kr_check(model: IchModel) -> tuple[list[str], dict]:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("693_J2KR.dcm", download=False)
    if not path:
        return [], {}
    p = predict_series(model, read_volume(ich_viewer.load(path).series[0])).probabilities[0]
    flagged = {name: [c for c, v, limit in zip(CLASSES, p, t) if v >= limit] for name, t in _viewer_thresholds(model).items()}
    lines = ["`693_J2KR.dcm` (pydicom-data; CQ500-CT-310, read as subdural hemorrhage with midline shift):", "",
             *_table("", [("probability", [f"{v:.3f}" for v in p])]), "",
             "Flagged: " + "; ".join(f"{n}: {', '.join(f) or 'nothing'}" for n, f in flagged.items()), ""]
    return lines, {"probabilities": dict(zip(CLASSES, map(float, p))), "flagged": flagged}


def external_checks(model_path: Path, data: Path = DATA, reports: Path = REPO / "training" / "reports"
                    ) -> tuple[str, dict]:
    """Markdown and numbers; a folder that is not there is left out."""
    model = IchModel(model_path)
    lines = ["", "## Real CT from other hospitals (never used for training or thresholds)", ""]
    numbers: dict = {}
    if (data / "rsna-unlabelled").is_dir():
        more, numbers["rsna_unlabelled"] = normal_flag_rates(model, data / "rsna-unlabelled")
        lines += more
    if (data / "cq500-ct0").is_dir():
        more, numbers["cq500_ct0"] = cq500_checks(model, data / "cq500-ct0", reports)
        lines += more
    more, j2kr = j2kr_check(model)
    if j2kr:
        numbers["693_J2KR"] = j2kr
        lines += more
    return "\n".join(lines), numbers
