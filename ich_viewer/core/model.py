"""Loading a model that meets the contract (``../shared/docs/model-contract.md``) with ONNX Runtime.

With :mod:`ich_viewer.core.inference`, the only onnxruntime importer. A model is refused, with a
sentence a clinician understands, when it is missing, damaged, altered (bundled model: SHA-256
against ``manifest.json``; every model: the two checksums sealed inside it at export) or does not
conform (inputs, outputs, class order, metadata, and every card field the viewer reads: the checks
themselves are :mod:`~ich_viewer.core.contract`'s, shared with training's exporter).

Integrity (contract, "Integrity"): an exported model carries two SHA-256 values in its metadata, each
64 lowercase hex characters:

- ``ich.weights_sha256``: over the graph's initializers in graph order (``ModelProto.graph.initializer``):
  for each, its serialized ``TensorProto`` bytes as stored in the file, preceded by their length as 8
  little-endian bytes. Name, data type, shape and every weight byte are covered. In onnx terms:
  ``sha256(b"".join(len(b).to_bytes(8, "little") + b for b in (t.SerializeToString() for t in
  model.graph.initializer)))``.
- ``ich.file_sha256``: over the whole file, with this entry's own 64 value characters read as 64 ASCII
  ``0``. The exporter writes ``0`` * 64, hashes, then writes the value in place (same length).

The weights hash identifies the weights across metadata edits; the file hash covers every other byte
(graph, attributes, card), so any changed byte is refused. Both are read straight from the bytes (the
entry ``0A 0F "ich.file_sha256" 12 40`` must occur exactly once), so checking them needs no ONNX parser
besides ONNX Runtime's (no onnx package at run time). With the card checks they add about 20 ms to the
bundled model's load (~65 ms on one thread). They detect damage and edits, not forgery: anyone can
re-seal a file they changed, so a model from an untrusted source is still untrusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ich_viewer.core.contract import (CARD_KEY, CONTRACT_KEY, CONTRACT_VERSION, INPUT_NAME, OPTIONAL_OUTPUTS, OUTPUTS,
                                      CLASSES, BatchResult, ModelCard)
from ich_viewer.core.errors import ModelError

WEIGHTS_HASH_KEY = "ich.weights_sha256"
FILE_HASH_KEY = "ich.file_sha256"
HASH_PLACEHOLDER = "0" * 64
MAX_CAM_SIDE = 64  # the contract's heat maps are the last feature grid (5 x 5 at 160 px): 4096 x 4096 took 6 GB


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


# --------------------------------------------------------------------------- integrity


def _entry(key: str) -> bytes:
    """How protobuf stores a metadata entry ``key`` with a 64-byte value: key (field 1), value (field 2, length 64)."""
    return b"\x0a" + bytes([len(key)]) + key.encode() + b"\x12\x40"


def _value_offset(data: bytes, key: str) -> int | None:
    """Where ``key``'s 64-character value starts in ``data``; None unless the entry occurs exactly once."""
    entry = _entry(key)
    first = data.find(entry)
    if first < 0 or data.find(entry, first + 1) >= 0:
        return None
    return first + len(entry) if first + len(entry) + 64 <= len(data) else None


def _varint(data: memoryview, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i


def _fields(data: memoryview, start: int, end: int):
    """(field number, wire type, start, end) of each field of the protobuf message ``data[start:end]``."""
    i = start
    while i < end:
        key, i = _varint(data, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, j = _varint(data, i, end)
        elif wire == 1:
            j = i + 8
        elif wire == 2:
            length, i = _varint(data, i, end)
            j = i + length
        elif wire == 5:
            j = i + 4
        else:
            raise ValueError(f"wire type {wire}")  # groups: never written by onnx
        if j > end:
            raise ValueError("field runs past its message")
        yield number, wire, i, j
        i = j


def weights_sha256(data: bytes) -> str:
    """``ich.weights_sha256`` of a serialized model (module docstring). ValueError if it is not protobuf."""
    view, digest = memoryview(data), hashlib.sha256()
    for number, wire, start, end in _fields(view, 0, len(view)):
        if number == 7 and wire == 2:  # ModelProto.graph (protobuf merges repeats, so take every one, in order)
            for inner, inner_wire, s, e in _fields(view, start, end):
                if inner == 5 and inner_wire == 2:  # GraphProto.initializer
                    digest.update((e - s).to_bytes(8, "little"))
                    digest.update(view[s:e])
    return digest.hexdigest()


#: Operators only a quantised (INT8) graph holds.
QUANTISED_OPS = {b"QuantizeLinear", b"DequantizeLinear", b"QLinearConv", b"QLinearMatMul", b"ConvInteger",
                 b"MatMulInteger", b"DynamicQuantizeLinear"}


def is_quantised(data: bytes) -> bool:
    """Whether the serialized model's graph has quantised operators (an INT8 export); ValueError if not protobuf."""
    view = memoryview(data)
    for number, wire, start, end in _fields(view, 0, len(view)):
        if number == 7 and wire == 2:  # ModelProto.graph
            for inner, inner_wire, s, e in _fields(view, start, end):
                if inner == 1 and inner_wire == 2:  # GraphProto.node
                    for field, field_wire, a, b in _fields(view, s, e):
                        if field == 4 and field_wire == 2 and bytes(view[a:b]) in QUANTISED_OPS:  # NodeProto.op_type
                            return True
    return False


def file_digests(data: bytes) -> tuple[str, str | None, str | None]:
    """SHA-256 of ``data``; the ``ich.file_sha256`` value stored in it; that value recomputed (module
    docstring). The last two are None when the entry is missing or occurs more than once. One pass."""
    offset = _value_offset(data, FILE_HASH_KEY)
    if offset is None:
        return hashlib.sha256(data).hexdigest(), None, None
    view = memoryview(data)
    head = hashlib.sha256(view[:offset])
    whole = head.copy()
    whole.update(view[offset:])
    head.update(HASH_PLACEHOLDER.encode())
    head.update(view[offset + 64:])
    return whole.hexdigest(), bytes(view[offset:offset + 64]).decode("ascii", "replace"), head.hexdigest()


def seal(data: bytes) -> bytes:
    """A serialized model whose ``ich.weights_sha256`` and ``ich.file_sha256`` entries hold the placeholder,
    with both values written in place (the exporter's last step; the bytes otherwise unchanged)."""
    data = bytearray(data)
    for key in (WEIGHTS_HASH_KEY, FILE_HASH_KEY):  # weights first: the file hash covers the weights hash
        offset = _value_offset(data, key)
        if offset is None or data[offset:offset + 64] != HASH_PLACEHOLDER.encode():
            raise ValueError(f"the model must hold exactly one {key} entry with the placeholder value")
        value = weights_sha256(data) if key == WEIGHTS_HASH_KEY else hashlib.sha256(data).hexdigest()
        data[offset:offset + 64] = value.encode()  # same length: nothing else moves
    return bytes(data)


def integrity_problem(data: bytes, meta: dict, stored_file: str | None, computed_file: str | None) -> str | None:
    """``"missing"`` or ``"mismatch"`` when ``data`` fails its sealed checksums, None when both match.
    ``meta``: the metadata ONNX Runtime read; the stored value must also be the one it sees."""
    if FILE_HASH_KEY not in meta or WEIGHTS_HASH_KEY not in meta:
        return "missing"
    if stored_file is None or stored_file != meta[FILE_HASH_KEY] or stored_file != computed_file:
        return "mismatch"
    try:
        weights = weights_sha256(data)
    except ValueError:
        return "mismatch"
    return None if weights == meta[WEIGHTS_HASH_KEY] else "mismatch"


# --------------------------------------------------------------------------- loading


class IchModel:
    """One ONNX Runtime session for a contract model; ``run`` takes HU and returns probabilities and CAMs."""

    def __init__(self, path: str | Path, *, expected_sha256: str | None = None, threads: int | None = None):
        self.path = Path(path)
        name = self.path.name
        if not self.path.is_file():
            # the bundled file missing means a damaged installation; a file the user named, a wrong path
            advice = "Reinstall ICH Viewer or choose another model file." if expected_sha256 else \
                "Check the path, or choose another model file (.onnx)."
            what = "is a folder, not a model file" if self.path.is_dir() else "was not found"
            raise ModelError(f"The model file {name} {what}. {advice}")
        try:
            data = self.path.read_bytes()  # hashed and handed to ONNX Runtime as one buffer: what is checked runs
        except OSError as exc:
            raise ModelError(f"The model file {name} could not be read ({exc.strerror or exc}).") from exc
        self.sha256, stored_file, computed_file = file_digests(data)
        if expected_sha256 is not None and self.sha256 != expected_sha256:
            raise ModelError(f"The bundled model {name} has been changed or damaged (its checksum does "
                             "not match the one shipped with ICH Viewer), so it will not be used. Reinstall ICH "
                             "Viewer.")
        # A seal that is present and wrong is known here, but the file is still parsed and checked against the
        # contract first, so a hand-edited card says which field is wrong; the damage is added to that sentence.
        damaged = stored_file is not None and stored_file != computed_file
        damage_note = (" Its checksum does not match the one recorded inside it either, so the file was changed "
                       "or damaged after export.") if damaged else ""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: a model's shape warnings are ours to word (exit 2, one line)
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types for bad files
            raise ModelError(f"{name} is not a readable ONNX model (the file may be damaged or not a "
                             f"model at all), so it cannot be used.{damage_note}") from exc
        try:
            card, meta = check_contract(self.session, name)
        except ModelError as exc:
            raise ModelError(f"{exc}{damage_note}") from exc
        problem = integrity_problem(data, meta, stored_file, computed_file)
        if problem == "missing":
            raise ModelError(f"{name} is not a model ICH Viewer can use: it carries no integrity checksums "
                             f"('{WEIGHTS_HASH_KEY}' and '{FILE_HASH_KEY}' in its metadata), so a damaged copy "
                             "could not be told from a good one. Export it again with ICH Viewer's training "
                             "package (python -m training export), which records them.")
        if problem == "mismatch":
            raise ModelError(f"{name} has been changed or damaged since it was exported (its checksums do not "
                             "match the ones recorded inside it), so it will not be used. Use the original file "
                             "or export the model again.")
        self.card = card
        self.weights_sha256: str = meta[WEIGHTS_HASH_KEY]  # checked equal to the weights just above
        self.quantised = is_quantised(data)  # the card's figures were measured before an INT8 export
        present = {o.name for o in self.session.get_outputs()}
        self._output_names = [*OUTPUTS, *(name for name in OPTIONAL_OUTPUTS if name in present)]

    @classmethod
    def bundled(cls, models_dir: str | Path, threads: int | None = None) -> "IchModel":
        path, expected = bundled_model_path(models_dir)
        return cls(path, expected_sha256=expected, threads=threads)

    def run(self, hu: np.ndarray, indices: np.ndarray | None = None,
            cancel: "Cancellation | None" = None) -> BatchResult:
        """HU [N, 1, H, W] (or [N, H, W]) of the slices ``indices`` (default 0..N-1) -> their :class:`BatchResult`.
        ``cancel`` set during the run stops ONNX Runtime mid-batch: :class:`Cancelled`."""
        hu = np.asarray(hu, np.float32)
        if hu.ndim == 3:
            hu = hu[:, None]
        options = ort.RunOptions()
        options.log_severity_level = 4  # a cancelled run is reported by Cancelled, not by ONNX Runtime's red log line
        with cancel.watching(options) if cancel is not None else contextlib.nullcontext():
            try:
                values = self.session.run(self._output_names, {INPUT_NAME: hu}, options)
            except Exception:  # noqa: BLE001 - ONNX Runtime's own type for "terminated"
                if cancel is not None and cancel.is_set():
                    raise Cancelled() from None
                raise
        outputs = dict(zip(self._output_names, values))
        probabilities, cam = outputs["probabilities"], outputs["cam"]
        # The declared shapes can leave these open ("N, ?"): what came back is checked before anything uses it
        if probabilities.shape != (len(hu), len(CLASSES)) or cam.ndim != 4 or cam.shape[:2] != (len(hu), len(CLASSES)) \
                or max(cam.shape[2:]) > MAX_CAM_SIDE:
            raise ModelError(f"{self.path.name} is not a model ICH Viewer can use: for {len(hu)} slices it gave "
                             f"probabilities {list(probabilities.shape)} and heat maps {list(cam.shape)}, not "
                             f"[{len(hu)}, {len(CLASSES)}] and [{len(hu)}, {len(CLASSES)}, h, w] with h and w at most "
                             f"{MAX_CAM_SIDE}.")
        return BatchResult(np.arange(len(hu)) if indices is None else np.asarray(indices, int),
                           probabilities, cam, outputs.get("logits"))


class Cancelled(Exception):
    """A run stopped by its :class:`Cancellation`."""


class Cancellation(threading.Event):
    """A cancel flag that also stops the model runs in progress: between batches is not enough when one batch
    of a slow model never ends (closing the window then destroyed a running thread, which aborts)."""

    def __init__(self) -> None:
        super().__init__()
        self._runs: list = []
        self._lock = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._lock:
            for options in self._runs:
                options.terminate = True

    @contextlib.contextmanager
    def watching(self, options):
        with self._lock:
            self._runs.append(options)
            options.terminate = self.is_set()
        try:
            yield
        finally:
            with self._lock:
                self._runs.remove(options)


# --------------------------------------------------------------------------- the contract


def check_contract(session: ort.InferenceSession, name: str) -> tuple[ModelCard, dict]:
    """(card, metadata), or :class:`ModelError` saying what about the file does not fit the contract;
    nothing else escapes, whatever the file holds."""

    def refuse(reason: str) -> ModelError:
        return ModelError(f"{name} is not a model ICH Viewer can use: {reason}.")

    try:
        inputs, outputs = session.get_inputs(), {o.name: o for o in session.get_outputs()}
    except UnicodeDecodeError:  # onnxruntime decodes names as UTF-8 when asked, not when loading
        raise refuse("the names of its inputs or outputs are not valid text") from None
    if (len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(float)"
            or len(inputs[0].shape) != 4):
        raise refuse(f"it must take one input named '{INPUT_NAME}' (float32 slices in Hounsfield units, [N, 1, H, W])")
    fixed = [dim for dim in (inputs[0].shape[0], *inputs[0].shape[2:]) if isinstance(dim, int)]
    channels = inputs[0].shape[1]
    if fixed or (isinstance(channels, int) and channels != 1):
        raise refuse(f"its input must take any number of slices of any size, [N, 1, H, W]; it declares "
                     f"{list(inputs[0].shape)}")
    for required, rank in OUTPUTS.items():
        if required not in outputs:
            raise refuse(f"it has no '{required}' output" + (" (the heat maps that show where it looked)"
                                                             if required == "cam" else ""))
        if len(outputs[required].shape) != rank:
            raise refuse(f"its '{required}' output has the wrong number of dimensions")
        shape = outputs[required].shape
        if isinstance(shape[1], int) and shape[1] != len(CLASSES):
            raise refuse(f"its '{required}' output has {shape[1]} classes, not the contract's {len(CLASSES)}")
        if required == "cam" and any(isinstance(side, int) and side > MAX_CAM_SIDE for side in shape[2:]):
            raise refuse(f"its heat maps are {shape[2]} x {shape[3]}: the contract's are the feature grid, at most "
                         f"{MAX_CAM_SIDE} x {MAX_CAM_SIDE}")
    for optional, rank in OPTIONAL_OUTPUTS.items():
        if optional in outputs and len(outputs[optional].shape) != rank:
            raise refuse(f"its '{optional}' output has the wrong number of dimensions")
    try:
        meta = dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:
        raise refuse("its metadata is not valid UTF-8 text (the file may be damaged)") from None
    if meta.get(CONTRACT_KEY) != CONTRACT_VERSION:
        raise refuse(f"it does not declare model contract version {CONTRACT_VERSION} in its metadata")
    try:
        card = json.loads(meta[CARD_KEY])
    except (KeyError, ValueError):
        raise refuse(f"its model card (metadata '{CARD_KEY}') is missing or not valid JSON") from None
    try:
        return ModelCard.from_dict(card), meta
    except ValueError as exc:
        raise refuse(str(exc)) from None
