"""Threshold presets chosen at a site, kept in the user's settings, never in the model file.

``ich-viewer calibrate`` (and Model > Calibrate to this site...) runs the bundled model over studies a
site knows to be normal and sets each class's threshold so that at most a chosen fraction of those
slices flag (:func:`thresholds_for_flag_rate`). The preset is saved in one JSON file in the user's
config folder (``~/.config/ich-viewer/site_presets.json`` on Linux, see
:func:`ich_viewer.paths.user_config_dir`), under the model's SHA-256: a preset made for one model never
applies to another, and the model file (and its sealed card) is never changed. The viewer and triage both
read this file, so a preset made on the command line shows in the window and the other way round.

No Qt here: the same file serves the headless CLI and the GUI.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.errors import CalibrationError
from ich_viewer.paths import user_config_dir

FILE_NAME = "site_presets.json"
FORMAT = 1
#: Fewer normal slices, or slices from fewer studies, than this are refused: a 5% tail of 40 slices is
#: two slices, and slices of one or two patients say more about those patients than about the scanners.
MIN_SLICES, MIN_STUDIES = 100, 3
DEFAULT_NAME, DEFAULT_MAX_FLAG_RATE = "site", 0.05


@dataclass
class SitePreset:
    """Per-class thresholds chosen on a site's normal studies, with what they were chosen on."""

    name: str
    thresholds: dict[str, float]
    max_flag_rate: float
    slices: int
    studies: int
    #: Per class, the fraction of the site's normal slices these thresholds flag (at most max_flag_rate).
    flag_rates: dict[str, float] = field(default_factory=dict)
    #: Per class, True where the card's default threshold (the floor) was already high enough.
    at_floor: dict[str, bool] = field(default_factory=dict)
    floor_preset: str = ""
    created: str = ""

    @property
    def rule(self) -> str:
        return (f"site: at most {self.max_flag_rate:.0%} of {self.slices} normal slices from {self.studies} "
                f"studies flag, never below the card's {self.floor_preset.replace('_', ' ')} preset")


def thresholds_for_flag_rate(probabilities: np.ndarray, max_flag_rate: float,
                             floor: dict[str, float]) -> tuple[dict[str, float], dict[str, bool]]:
    """Per class the lowest threshold (on a 0.0001 grid) at which at most ``max_flag_rate`` of the rows of
    ``probabilities`` ([N, 6], normal slices; NaN rows are left out) flag, raised to ``floor`` where that is
    higher. Returns the thresholds and, per class, whether the floor decided.

    Why a floor (the card's default preset): normal studies measure only false flags. They can justify
    raising a threshold (fewer false flags on this site's scanners) but say nothing about what a lower one
    would find, so calibration never lowers a threshold below the one the model's validation chose, and
    never trades away the sensitivity the card reports for a flag budget that is merely unspent.
    Flags are ``probability >= threshold`` in float32, as :meth:`Thresholds.flags` computes them.
    """
    check_flag_rate(max_flag_rate)
    p = np.asarray(probabilities, np.float32)
    p = p[~np.isnan(p).any(1)]
    allowed = int(math.floor(max_flag_rate * len(p) + 1e-9))  # slices that may flag
    thresholds, at_floor = {}, {}
    for c, name in enumerate(CLASSES):
        column = np.sort(p[:, c])[::-1]
        # Above the (allowed + 1)-th highest probability: at most ``allowed`` slices are >= it.
        cut = float(column[allowed]) if allowed < len(column) else 0.0
        value = math.floor(cut * 1e4 + 1.0) / 1e4
        while np.float32(value) <= np.float32(cut) and value < 1.0:
            value += 1e-4
        value = min(round(value, 4), 1.0)
        at_floor[name] = floor[name] >= value
        thresholds[name] = float(max(value, floor[name]))
    return thresholds, at_floor


def flag_rates(probabilities: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    p = np.asarray(probabilities, np.float32)
    p = p[~np.isnan(p).any(1)]
    return {name: float((p[:, c] >= np.float32(thresholds[name])).mean()) if len(p) else 0.0
            for c, name in enumerate(CLASSES)}


def make_preset(probabilities: np.ndarray, studies: int, max_flag_rate: float, name: str, floor_preset: str,
                floor: dict[str, float]) -> SitePreset:
    """The preset for ``probabilities`` (one row per normal slice of ``studies`` studies); refuses too little data."""
    p = np.asarray(probabilities, np.float32)
    slices = int((~np.isnan(p).any(1)).sum()) if p.size else 0
    refuse_small(slices, studies)
    thresholds, at_floor = thresholds_for_flag_rate(p, max_flag_rate, floor)
    return SitePreset(name, thresholds, float(max_flag_rate), slices, studies, flag_rates(p, thresholds), at_floor,
                      floor_preset, date.today().isoformat())


def refuse_small(slices: int, studies: int) -> None:
    if slices < MIN_SLICES or studies < MIN_STUDIES:
        raise CalibrationError(
            f"Too few normal slices to calibrate on: {slices} slice(s) from {studies} stud{'y' if studies == 1 else 'ies'} "
            f"within the model's intended use; at least {MIN_SLICES} slices from {MIN_STUDIES} studies are needed.")


def check_flag_rate(max_flag_rate: float) -> None:
    if not 0.0 < max_flag_rate < 1.0:
        raise CalibrationError(f"the flag rate must be above 0 and below 1 (0.05 is 5%), not {max_flag_rate:g}.")


def check_name(name: str, card_presets) -> None:
    if not name.strip() or name in card_presets or name == "custom":
        raise CalibrationError(f"the preset name {name!r} cannot be used: the model card's presets are "
                               f"{', '.join(card_presets)}, and 'custom' is the viewer's; choose another name.")


# ---------------------------------------------------------------------- the settings file


def presets_file() -> Path:
    return user_config_dir() / FILE_NAME


def _read(path: Path) -> dict:
    if not path.exists():
        return {"format": FORMAT, "models": {}}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ValueError("no 'models' object")
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"The site presets file {path} cannot be read ({exc}): move it away and "
                               "calibrate again.") from None
    return data


def load(model_sha256: str, path: Path | None = None) -> dict[str, SitePreset]:
    """The site presets saved for the model with this SHA-256 (none for any other model); {} when there are none.
    CalibrationError for a damaged file."""
    entry = _read(path or presets_file())["models"].get(model_sha256) or {}
    out = {}
    for name, fields in (entry.get("presets") or {}).items():
        try:
            preset = SitePreset(**{**fields, "name": name})
            preset.thresholds = {c: float(preset.thresholds[c]) for c in CLASSES}
        except (TypeError, KeyError, ValueError) as exc:
            raise CalibrationError(f"The site preset {name!r} in {path or presets_file()} is damaged ({exc}): "
                                   "calibrate again.") from None
        out[name] = preset
    return out


def save(preset: SitePreset, model_sha256: str, model_name: str, path: Path | None = None) -> Path:
    """Add or replace ``preset`` for this model; other models' presets are kept. Written whole, then renamed
    into place, so a crash never leaves half a file."""
    path = path or presets_file()
    data = _read(path)
    entry = data["models"].setdefault(model_sha256, {"model": model_name, "presets": {}})
    fields = asdict(preset)
    fields.pop("name")
    entry["presets"][preset.name] = fields
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".site_presets", suffix=".json",
                                     delete=False) as f:
        json.dump(data, f, indent=1)
    os.replace(f.name, path)
    return path
