"""Loading a model that meets the contract (``../shared/docs/model-contract.md``) with ONNX Runtime.

With :mod:`ich_viewer.core.inference`, the only onnxruntime importer. A model is refused, with a
sentence a clinician understands, when it is missing, damaged, altered (bundled model: SHA-256
against ``manifest.json``) or does not conform (inputs, outputs, class order, metadata).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ich_viewer.core.errors import ModelError
from ich_viewer.core.phantom import CLASSES

CONTRACT_VERSION = "1"
REQUIRED_CARD_KEYS = ("name", "version", "classes", "input", "thresholds", "operating_curves", "intended_use",
                      "limitations")


@dataclass(frozen=True)
class ModelCard:
    """The card inside the ONNX file, with the accessors the viewer needs."""

    raw: dict = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.raw.get("name", "model"))

    @property
    def version(self) -> str:
        return str(self.raw.get("version", ""))

    @property
    def presets(self) -> dict[str, dict[str, float]]:
        """Named threshold presets, ``default`` first, then the card's order."""
        thresholds = {k: v for k, v in self.raw["thresholds"].items() if isinstance(v, dict)}
        first = self.raw["thresholds"].get("default")
        names = ([first] if first in thresholds else []) + [n for n in thresholds if n != first]
        return {name: {c: float(thresholds[name][c]) for c in CLASSES} for name in names}

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))

    @property
    def operating_curves(self) -> dict[str, dict]:
        return self.raw.get("operating_curves") or {}

    @property
    def cam_scale(self) -> dict[str, float]:
        """Per-class CAM value shown at full colour (from the model's validation data)."""
        scale = self.raw.get("cam_scale") or {}
        return {c: float(scale.get(c) or 1.0) for c in CLASSES}

    @property
    def intended_use(self) -> str:
        return str(self.raw.get("intended_use", ""))

    @property
    def limitations(self) -> str:
        return str(self.raw.get("limitations", ""))


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_model_path(models_dir: str | Path) -> tuple[Path, str]:
    """The bundled model's path and expected SHA-256, from ``manifest.json``."""
    manifest_path = Path(models_dir) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        entry = manifest["models"][0]
        return Path(models_dir) / entry["file"], str(entry["sha256"])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ModelError("The bundled model's manifest is missing or unreadable, so the bundled model cannot be "
                         "verified. Reinstall ICH Viewer, or open another model (Model > Open model...).") from exc


class IchModel:
    """One ONNX Runtime session for a contract model; ``run`` takes HU and returns probabilities and CAMs."""

    def __init__(self, path: str | Path, *, expected_sha256: str | None = None, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"The model file {self.path.name} was not found. Reinstall ICH Viewer or choose "
                             "another model file.")
        self.sha256 = sha256(self.path)
        if expected_sha256 is not None and self.sha256 != expected_sha256:
            raise ModelError(f"The bundled model {self.path.name} has been changed or damaged (its checksum does "
                             "not match the one shipped with ICH Viewer), so it will not be used. Reinstall ICH "
                             "Viewer.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types for bad files
            raise ModelError(f"{self.path.name} is not a readable ONNX model (the file may be damaged or not a "
                             "model at all), so it cannot be used.") from exc
        self.card = ModelCard(check_contract(self.session, self.path.name))

    @classmethod
    def bundled(cls, models_dir: str | Path, threads: int | None = None) -> "IchModel":
        path, expected = bundled_model_path(models_dir)
        return cls(path, expected_sha256=expected, threads=threads)

    def run(self, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HU [N, 1, H, W] (or [N, H, W]) -> probabilities [N, 6], CAM [N, 6, h, w] (unnormalised)."""
        hu = np.asarray(hu, np.float32)
        if hu.ndim == 3:
            hu = hu[:, None]
        probabilities, cam = self.session.run(["probabilities", "cam"], {"hu": hu})
        return probabilities, cam


def check_contract(session: ort.InferenceSession, name: str) -> dict:
    """The card, or :class:`ModelError` saying what about the file does not fit the contract."""

    def refuse(reason: str) -> ModelError:
        return ModelError(f"{name} is not a model ICH Viewer can use: {reason}.")

    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != "hu" or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4:
        raise refuse("it must take one input named 'hu' (float32 slices in Hounsfield units, [N, 1, H, W])")
    outputs = {o.name: o for o in session.get_outputs()}
    for required, rank in (("probabilities", 2), ("cam", 4)):
        if required not in outputs:
            raise refuse(f"it has no '{required}' output" + (" (the heat maps that show where it looked)"
                                                             if required == "cam" else ""))
        if len(outputs[required].shape) != rank:
            raise refuse(f"its '{required}' output has the wrong number of dimensions")
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("ich.contract") != CONTRACT_VERSION:
        raise refuse(f"it does not declare model contract version {CONTRACT_VERSION} in its metadata")
    try:
        card = json.loads(meta["ich.card"])
    except (KeyError, ValueError):
        raise refuse("its model card (metadata 'ich.card') is missing or not valid JSON") from None
    if not isinstance(card, dict):
        raise refuse("its model card is not a JSON object")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise refuse(f"its model card lacks {', '.join(missing)}")
    if list(card["classes"]) != list(CLASSES):
        raise refuse(f"its classes are {card['classes']}, not {list(CLASSES)} in that order")
    presets = {k: v for k, v in card["thresholds"].items() if isinstance(v, dict)}
    if not presets or any(set(CLASSES) - set(p) for p in presets.values()):
        raise refuse("its threshold presets do not cover all six classes")
    for c, curve in (card["operating_curves"] or {}).items():
        lengths = {len(curve.get(k, ())) for k in ("thresholds", "precision", "recall", "specificity")}
        if len(lengths) != 1:
            raise refuse(f"its operating curve for {c} is malformed")
    return card
