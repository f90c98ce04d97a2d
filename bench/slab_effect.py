"""What feeding a thin series as slabs changes: CQ500-CT-0 (238 slices 0.618 mm apart) slice by slice and as
5 mm slabs, through the bundled model given a card stating 5 mm (a temporary copy; same weights).

    .venv/bin/python bench/slab_effect.py [--data ../shared/data/cq500-ct0] [--thickness 5]

Prints, per threshold preset and class, the slices flagged (and in how many runs) each way; then per class the
highest probability and the mean change in probability from one slice to the next (how jumpy it is along z).
Flags are counted at the preset's thresholds whatever the viewer would show: CQ500-CT-0 is contrast-enhanced,
outside the model's intended use, so the viewer flags none of it unless asked. A class the viewer would not
flag under the preset (not calibrated, or its rule unmet) is marked with *.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.model_cards: the bundled model with an edited card, sealed

import ich_viewer  # noqa: E402
from ich_viewer.core.contract import CLASSES  # noqa: E402
from ich_viewer.core.inference import flagged_ranges, predict_series  # noqa: E402
from ich_viewer.core.model import IchModel  # noqa: E402
from ich_viewer.core.slabs import plan_for_series  # noqa: E402
from ich_viewer.core.thresholds import Thresholds  # noqa: E402
from ich_viewer.core.volume import read_volume  # noqa: E402
from tests.model_cards import bundled_with_card  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cq500-ct0")
    parser.add_argument("--thickness", type=float, default=5.0, help="the card's slice_thickness_mm")
    args = parser.parse_args(argv)

    series = ich_viewer.load(args.data).series[0]
    volume = read_volume(series)
    with tempfile.TemporaryDirectory() as tmp:
        model = IchModel(bundled_with_card(Path(tmp) / "model.onnx", slice_thickness_mm=args.thickness))
    plan = plan_for_series(series, model.card.slice_thickness_mm)
    print(f"{args.data.name}: {len(series)} slices, median spacing {series.geometry.slice_spacing:.4f} mm; "
          f"{plan.describe() if plan else 'no slabs'}; model {model.card.name} {model.card.version}")
    runs = {}
    for name, slabs in (("thin", None), ("slabs", plan)):
        t0 = time.perf_counter()
        runs[name] = predict_series(model, volume, slabs=slabs).probabilities
        print(f"  {name}: {time.perf_counter() - t0:.1f} s")

    print(f"\n{'preset':<18}{'class':<18}{'threshold':>9}  {'thin: slices (runs)':>20}  {'slabs: slices (runs)':>20}")
    for preset in model.card.presets:
        thresholds = Thresholds(model.card, preset)
        off = thresholds.not_flagged()
        for c, name in enumerate(CLASSES):
            cells = []
            for run in runs.values():
                flags = run[:, c] >= thresholds.values[name]
                cells.append(f"{int(flags.sum())} ({len(flagged_ranges(flags))})")
            label = name + (" *" if name in off else "")
            print(f"{preset:<18}{label:<18}{thresholds.values[name]:>9.3f}  {cells[0]:>20}  {cells[1]:>20}")

    print(f"\n{'class':<18}{'max p thin':>11}{'max p slabs':>12}{'mean |dp| thin':>16}{'mean |dp| slabs':>17}")
    for c, name in enumerate(CLASSES):
        thin, slab = runs["thin"][:, c], runs["slabs"][:, c]
        print(f"{name:<18}{thin.max():>11.3f}{slab.max():>12.3f}{np.abs(np.diff(thin)).mean():>16.4f}"
              f"{np.abs(np.diff(slab)).mean():>17.4f}")


if __name__ == "__main__":
    main()
