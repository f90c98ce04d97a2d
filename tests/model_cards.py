"""A copy of the bundled model with an edited card, sealed as the exporter seals it (so it loads as a chosen
model): for cards stating a field the bundled one does not have yet, such as ``slice_thickness_mm``."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from ich_viewer.core.contract import CARD_KEY
from ich_viewer.core.model import FILE_HASH_KEY, HASH_PLACEHOLDER, WEIGHTS_HASH_KEY, bundled_model_path, seal
from ich_viewer.paths import models_dir


def bundled_with_card(dst: str | Path, drop: tuple[str, ...] = (), **changes) -> Path:
    """The bundled model written to ``dst`` with ``changes`` made to its card and the ``drop`` keys removed
    from it; same weights, new checksums."""
    proto = onnx.load(str(bundled_model_path(models_dir())[0]))
    meta = {p.key: p.value for p in proto.metadata_props}
    card = {key: value for key, value in json.loads(meta[CARD_KEY]).items() if key not in drop}
    meta[CARD_KEY] = json.dumps({**card, **changes})
    meta[WEIGHTS_HASH_KEY] = meta[FILE_HASH_KEY] = HASH_PLACEHOLDER  # sealed below, in place
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    dst = Path(dst)
    dst.write_bytes(seal(proto.SerializeToString()))
    return dst
