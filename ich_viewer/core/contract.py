"""The model contract in code (``../shared/docs/model-contract.md``): the one place its names live.

Training's exporter and the viewer's loader import the same class order, version, card keys and card
checks from here; the engine hands every batch on as a :class:`BatchResult`, unchanged from ONNX Runtime
to triage and to the window. Adding a model output is a change here, in the engine and in the one view
that shows it. No onnxruntime, pydicom or Qt: a producer and a consumer can both import this cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ich_viewer.core.windows import Window

#: The RSNA 2019 order; ``any`` is learned as its own output, not an OR of the others.
CLASSES = ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
#: The usual short names, for labels with little room (the series tree, phantom descriptions).
ABBREVIATIONS = dict(zip(CLASSES, ("any", "EDH", "IPH", "IVH", "SAH", "SDH")))
CONTRACT_VERSION = "1"
INPUT_NAME = "hu"
#: Output names and ranks; ``logits`` is optional.
OUTPUTS = {"probabilities": 2, "cam": 4}
OPTIONAL_OUTPUTS = {"logits": 2}
CONTRACT_KEY, CARD_KEY = "ich.contract", "ich.card"
#: Every card holds these: the exporter refuses to write a card without them, the loader to open one.
REQUIRED_CARD_KEYS = ("name", "version", "created", "architecture", "license", "classes", "input", "windows",
                      "thresholds", "operating_curves", "validation", "training", "intended_use", "limitations")
CURVE_KEYS = ("thresholds", "precision", "recall", "specificity")
PRESET_META_KEYS = ("default", "notes")  # entries of ``thresholds`` that are not presets
CALIBRATED, NOT_CALIBRATED, NOT_STATED = "calibrated", "not calibrated", "not stated"


@dataclass(frozen=True)
class BatchResult:
    """What the model says about a batch of slices of one series: rows follow ``indices``."""

    indices: np.ndarray  # int [B], slice indices in the series
    probabilities: np.ndarray  # float32 [B, C]
    cam: np.ndarray  # float32 [B, C, h, w], unnormalised Grad-CAM
    logits: np.ndarray | None = None  # float32 [B, C], when the model has the optional output


@dataclass(frozen=True)
class ModelCard:
    """The card inside the ONNX file, typed; build it with :meth:`from_dict` (which checks it)."""

    name: str
    version: str
    architecture: str
    license: str
    intended_use: str
    limitations: str
    input_size: tuple[int, int] | None
    input_clip: tuple[float, float] | None
    #: The three windows inside the graph (empty when the card names none).
    windows: tuple[Window, ...]
    #: Named threshold presets, ``default`` first, then the card's order.
    presets: dict[str, dict[str, float]]
    preset_notes: tuple[str, ...]
    operating_curves: dict[str, dict]
    #: Per-class CAM value shown at full colour (from the model's validation data).
    cam_scale: dict[str, float]
    #: Per class: "calibrated", "not calibrated", or "not stated" (a card from before the field existed).
    calibration: dict[str, str]
    #: Per preset, the rule that chose its thresholds, in words ("best F1 among thresholds with ..."), if stated.
    preset_rules: dict[str, str]
    #: Per preset, the classes whose rule the validation data cannot meet, with why: never flagged under it.
    unmet: dict[str, dict[str, str]]
    slice_thickness_mm: float | None
    validation: dict
    training: dict
    raw: dict = field(repr=False)

    @classmethod
    def from_dict(cls, card) -> "ModelCard":
        """ValueError with :func:`card_problem`'s sentence fragment when ``card`` does not fit the contract."""
        problem = card_problem(card)
        if problem:
            raise ValueError(problem)
        spec, thresholds = card["input"], card["thresholds"]
        presets = {k: v for k, v in thresholds.items() if k not in PRESET_META_KEYS}
        first = thresholds.get("default")
        names = ([first] if first in presets else []) + [n for n in presets if n != first]
        scale = card.get("cam_scale") or {}
        calibration = card.get("calibration") or {}
        return cls(
            name=card["name"], version=card["version"], architecture=str(card["architecture"]),
            license=str(card["license"]), intended_use=card["intended_use"], limitations=card["limitations"],
            input_size=tuple(spec["size"]) if spec.get("size") else None,
            input_clip=tuple(float(v) for v in spec["clip"]) if spec.get("clip") else None,
            windows=tuple(Window(w["name"], float(w["center"]), float(w["width"])) for w in card.get("windows") or ()),
            presets={n: {c: float(presets[n][c]) for c in CLASSES} for n in names},
            preset_notes=tuple(thresholds.get("notes") or ()),
            operating_curves=card.get("operating_curves") or {},
            cam_scale={c: float(scale.get(c) or 1.0) for c in CLASSES},
            calibration={c: calibration.get(c, NOT_STATED) for c in CLASSES},
            preset_rules=dict(card.get("threshold_rules") or {}),
            unmet={p: dict(v) for p, v in (card.get("thresholds_unmet") or {}).items()},
            slice_thickness_mm=card.get("slice_thickness_mm"),
            validation=card.get("validation") or {}, training=card.get("training") or {}, raw=card)

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))


# --------------------------------------------------------------------------- checking a card


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unit(value) -> bool:
    return _number(value) and 0 <= value <= 1


def card_problem(card) -> str | None:
    """Why ``card`` cannot drive the viewer, naming the field (a sentence fragment), or None.

    Covers every field the viewer reads: :class:`ModelCard`'s, the thresholds panel and read-outs
    (presets, ``operating_curves``), the CAM display (``cam_scale``), the window buttons (``windows``)
    and the model card dialog (``validation``, ``training``)."""
    if not isinstance(card, dict):
        return "its model card is not a JSON object"
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        return f"its model card lacks {', '.join(missing)}"
    for key in ("name", "version", "intended_use", "limitations"):
        if not isinstance(card[key], str):
            return f"its model card's '{key}' is not text"
    if not isinstance(card["classes"], list):
        return "its model card's 'classes' is not a list of class names"
    if card["classes"] != list(CLASSES):
        return f"its classes are {card['classes']}, not {list(CLASSES)} in that order"
    return (_input_problem(card["input"]) or _thresholds_problem(card["thresholds"])
            or _curves_problem(card["operating_curves"]) or _cam_scale_problem(card.get("cam_scale"))
            or _windows_problem(card.get("windows")) or _calibration_problem(card)
            or _dialog_problem(card))


def _input_problem(spec) -> str | None:
    if not isinstance(spec, dict):
        return "its model card's 'input' is not an object"
    if "units" in spec and spec["units"] != "HU":
        return "its model card's 'input.units' is not \"HU\" (the viewer feeds Hounsfield units)"
    size = spec.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        return "its model card's 'input.size' is not two positive whole numbers"
    clip = spec.get("clip")
    if clip is not None and not (isinstance(clip, list) and len(clip) == 2 and all(map(_number, clip))
                                 and clip[0] < clip[1]):
        return "its model card's 'input.clip' is not null or two numbers [low, high]"
    return None


def _thresholds_problem(thresholds) -> str | None:
    if not isinstance(thresholds, dict):
        return "its model card's 'thresholds' is not an object of named presets"
    presets = {k: v for k, v in thresholds.items() if k not in PRESET_META_KEYS}
    if not presets:
        return "its model card's 'thresholds' holds no threshold presets"
    for preset, values in presets.items():
        if not isinstance(values, dict):
            return f"its threshold preset 'thresholds.{preset}' is not an object of per-class thresholds"
        lacking = [c for c in CLASSES if c not in values]
        if lacking:
            return f"its threshold presets do not cover all six classes ('thresholds.{preset}' lacks {', '.join(lacking)})"
        wrong = [c for c in CLASSES if not _unit(values[c])]
        if wrong:
            return f"its threshold preset 'thresholds.{preset}' has no number between 0 and 1 for {', '.join(wrong)}"
    default = thresholds.get("default")
    if default is not None and (not isinstance(default, str) or default not in presets):
        return "its model card's 'thresholds.default' does not name one of its presets"
    notes = thresholds.get("notes")
    if notes is not None and not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        return "its model card's 'thresholds.notes' is not a list of sentences"
    return None


def _curves_problem(curves) -> str | None:
    if curves is None:
        return None
    if not isinstance(curves, dict):
        return "its model card's 'operating_curves' is not an object with one curve per class"
    for c, curve in curves.items():
        if c not in CLASSES:
            return f"its model card's 'operating_curves' names an unknown class {c!r}"
        if not isinstance(curve, dict):
            return f"its operating curve for {c} ('operating_curves.{c}') is not an object"
        for key in CURVE_KEYS:
            values = curve.get(key)
            if not isinstance(values, list) or not all(map(_unit, values)):
                return f"its operating curve for {c} is malformed ('operating_curves.{c}.{key}' is not a list of numbers between 0 and 1)"
        if len({len(curve[key]) for key in CURVE_KEYS}) != 1:
            return f"its operating curve for {c} is malformed (its arrays in 'operating_curves.{c}' differ in length)"
    return None


def _cam_scale_problem(scale) -> str | None:
    if scale is None:
        return None
    if not isinstance(scale, dict):
        return "its model card's 'cam_scale' is not an object with one number per class"
    wrong = [c for c in CLASSES if scale.get(c) is not None and not (_number(scale[c]) and scale[c] > 0)]
    if wrong:
        return f"its model card's 'cam_scale' has no positive number for {', '.join(wrong)}"
    return None


def _windows_problem(windows) -> str | None:
    if windows is None or windows == []:
        return None
    if not isinstance(windows, list) or len(windows) != 3:
        return "its model card's 'windows' is not a list of three windows (one per input channel)"
    for i, w in enumerate(windows):
        if not (isinstance(w, dict) and isinstance(w.get("name"), str) and _number(w.get("center"))
                and _number(w.get("width")) and w["width"] > 0):
            return f"its model card's 'windows[{i}]' lacks a name, a centre or a positive width"
        if w.get("function", "linear") not in ("linear", "sigmoid") or not isinstance(w.get("learned", False), bool):
            return f"its model card's 'windows[{i}]' has a function other than linear or sigmoid, or a non-true/false 'learned'"
    return None


def _calibration_problem(card: dict) -> str | None:
    calibration, thickness = card.get("calibration"), card.get("slice_thickness_mm")
    if calibration is not None and not (isinstance(calibration, dict) and all(
            c in CLASSES and v in (CALIBRATED, NOT_CALIBRATED) for c, v in calibration.items())):
        return (f"its model card's 'calibration' is not an object giving each class \"{CALIBRATED}\" or "
                f"\"{NOT_CALIBRATED}\"")
    if thickness is not None and not (_number(thickness) and thickness > 0):
        return "its model card's 'slice_thickness_mm' is not a positive number"
    rules, unmet = card.get("threshold_rules"), card.get("thresholds_unmet")
    if rules is not None and not (isinstance(rules, dict) and all(isinstance(v, str) for v in rules.values())):
        return "its model card's 'threshold_rules' is not an object of sentences per preset"
    if unmet is not None and not (isinstance(unmet, dict) and all(
            isinstance(v, dict) and all(c in CLASSES and isinstance(why, str) for c, why in v.items())
            for v in unmet.values())):
        return "its model card's 'thresholds_unmet' is not an object of {class: reason} per preset"
    return None


def _dialog_problem(card: dict) -> str | None:
    """What the model card dialog formats as numbers or reads as objects."""
    for key in ("validation", "training"):
        if card.get(key) is not None and not isinstance(card[key], dict):
            return f"its model card's '{key}' is not an object"
    validation = card.get("validation") or {}
    for key in ("auc", "ap", "study_level"):
        values = validation.get(key)
        if values is None:
            continue
        if not isinstance(values, dict):
            return f"its model card's 'validation.{key}' is not an object with one entry per class"
        for c in CLASSES:
            value = values.get(c)
            if key == "study_level":
                if value is not None and not (isinstance(value, dict) and all(
                        value.get(k) is None or _number(value[k]) for k in ("recall", "specificity"))):
                    return f"its model card's 'validation.study_level.{c}' has a recall or specificity that is not a number"
            elif value is not None and not _number(value):
                return f"its model card's 'validation.{key}.{c}' is not a number"
    return None
