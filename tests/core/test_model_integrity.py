"""Every changed model byte is refused, and every malformed card field is a sentence (contract, Integrity).

Byte changes are made to the real bundled model, loaded as a user-chosen model (no manifest), so only
the checksums sealed inside it and the contract checks stand between a damaged file and a run. Card
fields are checked on a few-node model carrying the bundled model's card, sealed correctly, so the
refusal is the field's alone (and each case costs milliseconds, not a 12 MB load).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from ich_viewer.core.errors import ModelError
from ich_viewer.core.model import (FILE_HASH_KEY, HASH_PLACEHOLDER, WEIGHTS_HASH_KEY, IchModel, _fields, _varint,
                                   file_digests, seal, weights_sha256)
from ich_viewer.core.contract import CLASSES
from ich_viewer.paths import models_dir


@pytest.fixture(scope="module")
def bundled_bytes() -> bytes:
    manifest = json.loads((models_dir() / "manifest.json").read_text())
    return (models_dir() / manifest["models"][0]["file"]).read_bytes()


def _regions(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges of the weights, the rest of the graph (nodes, attributes, inputs), the header fields
    (IR version, producer, opsets) and the metadata entries, from the protobuf fields of the file."""
    view = memoryview(data)
    regions: dict[str, list[tuple[int, int]]] = {"weights": [], "graph": [], "header": [], "metadata": []}
    for number, _, start, end in _fields(view, 0, len(view)):
        if number == 7:  # ModelProto.graph: initializers (5) are the weights
            for inner, _, s, e in _fields(view, start, end):
                regions["weights" if inner == 5 else "graph"].append((s, e))
        else:
            regions["metadata" if number == 14 else "header"].append((start, end))
    return regions


def _spread(rng, spans: list[tuple[int, int]], n: int) -> list[int]:
    """``n`` distinct offsets drawn uniformly over the bytes of ``spans``."""
    sizes = np.array([e - s for s, e in spans])
    before = np.concatenate([[0], np.cumsum(sizes)])
    offsets = []
    for pick in rng.choice(int(sizes.sum()), n, replace=False):
        k = int(np.searchsorted(before, pick, "right")) - 1
        offsets.append(spans[k][0] + int(pick - before[k]))
    return offsets


def _value(data: bytes, key: str) -> int:
    """Where a checksum entry's 64-character value starts."""
    return data.find(key.encode()) + len(key) + 2


def _card_span(data: bytes) -> tuple[int, int]:
    """Start and end of the card JSON: the ich.card entry's value, by its protobuf length."""
    key = data.find(b"\x0a\x08ich.card\x12")
    length, start = _varint(memoryview(data), key + 11, len(data))
    return start, start + length


def _positions(data: bytes, seed: int = 20261123) -> dict[str, list[int]]:
    """57 positions: 16 in the weights, 14 in the rest of the graph (nodes, attributes), 4 in the header,
    23 in the metadata: the card, the contract entry, both checksum values and the checksum entries' framing."""
    rng = np.random.default_rng(seed)
    regions = _regions(data)
    card, card_end = _card_span(data)
    file_key = data.find(FILE_HASH_KEY.encode())
    return {
        "weights": _spread(rng, regions["weights"], 16),
        "graph": _spread(rng, regions["graph"], 14),
        "header": _spread(rng, regions["header"], 4),
        "card": [int(p) for p in rng.integers(card, card_end, 10)] + [card, card_end - 1],
        "contract entry": [data.find(b"ich.contract"), data.find(b"ich.contract") + 13],
        "weights checksum": [_value(data, WEIGHTS_HASH_KEY), _value(data, WEIGHTS_HASH_KEY) + 63],
        "file checksum": [_value(data, FILE_HASH_KEY), len(data) - 1],
        "checksum framing": [file_key - 4, file_key - 3, file_key - 2, file_key + 3, file_key + len(FILE_HASH_KEY) + 1],
    }


def test_every_one_byte_change_to_a_chosen_model_is_refused(bundled_bytes, tmp_path):
    """The issue: 18 of 29 one-byte changes were accepted and run. Each change XORs one byte with a
    non-zero value; every mutant must end in ModelError with a sentence, never load, never another error."""
    rng = np.random.default_rng(7)
    path = tmp_path / "model.onnx"
    path.write_bytes(bundled_bytes)
    assert IchModel(path).card.name  # the unchanged file loads as a chosen model: refusals below are the change
    positions = _positions(bundled_bytes)
    assert sum(map(len, positions.values())) == 57 and len({p for ps in positions.values() for p in ps}) == 57
    hu = np.zeros((1, 1, 64, 64), np.float32)
    one_thread = ort.SessionOptions()
    one_thread.intra_op_num_threads = 1
    refused, runs_in_onnxruntime = 0, 0
    for region, offsets in positions.items():
        for offset in offsets:
            mutant = bytearray(bundled_bytes)
            mutant[offset] ^= int(rng.integers(1, 256))
            path.write_bytes(mutant)
            with pytest.raises(ModelError) as refusal:
                IchModel(path, threads=1)  # one thread: a third faster to set up, and the checks do not care
            message = str(refusal.value)
            assert message.startswith("model.onnx ") and message.endswith("."), message
            refused += 1
            if region == "weights":  # what the old loader did with it: ONNX Runtime alone runs it
                ort.InferenceSession(bytes(mutant), one_thread, providers=["CPUExecutionProvider"]).run(None, {"hu": hu})
                runs_in_onnxruntime += 1
    assert refused == 57
    # The test can fail: these files run in ONNX Runtime (48 of the 57 do), so only the checks refuse them.
    assert runs_in_onnxruntime == 16


def _seal_file_only(data: bytes) -> bytes:
    """``data`` with a correct file checksum over whatever weights checksum it holds."""
    data = bytearray(data)
    value = _value(data, FILE_HASH_KEY)
    data[value:value + 64] = HASH_PLACEHOLDER.encode()
    data[value:value + 64] = hashlib.sha256(data).hexdigest().encode()
    return bytes(data)


def _resealed(data: bytes) -> bytes:
    """``data`` sealed afresh, as a careless exporter would ship an edited file: checksums right, content wrong."""
    data = bytearray(data)
    for key in (WEIGHTS_HASH_KEY, FILE_HASH_KEY):
        data[_value(data, key):_value(data, key) + 64] = HASH_PLACEHOLDER.encode()
    return seal(bytes(data))


def _card(data: bytes) -> dict:
    start, end = _card_span(data)
    return json.loads(data[start:end])


def _carrier(card, classes: int = 6, grid: int = 2, hu_shape=("N", 1, "H", "W"), probabilities_shape=("N", 6),
             cam_shape=("N", 6, 2, 2), open_shapes: bool = False, slow: bool = False) -> bytes:
    """A sealed contract model of five nodes (hu -> probabilities [N, 6], cam [N, 6, 2, 2]) carrying ``card``;
    or, for a hostile model, another number of classes, heat map grid and declared shapes. ``open_shapes``:
    the outputs are reshaped to a shape computed at run time, so ONNX Runtime cannot know them beforehand."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    last = ("probabilities_known", "cam_known") if open_shapes else ("probabilities", "cam")
    nodes = [helper.make_node("GlobalAveragePool", ["hu"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Mul", ["flat", "w"], ["logits"]), helper.make_node("Sigmoid", ["logits"], [last[0]]),
             helper.make_node("Mul", ["pooled", "grid"], [last[1]])]
    weights = [numpy_helper.from_array(np.linspace(-1, 1, classes, dtype=np.float32)[None], "w"),
               numpy_helper.from_array(np.ones((1, 6, grid, grid), np.float32), "grid")]
    if slow:  # "pooled" waits for a loop of two billion additions (minutes): a model that never seems to end
        body = helper.make_graph(
            [helper.make_node("Add", ["acc_in", "one"], ["acc_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
            "body", [helper.make_tensor_value_info("it", TensorProto.INT64, []),
                     helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                     helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
            initializer=[numpy_helper.from_array(np.ones(1, np.float32), "one")])
        nodes[0] = helper.make_node("GlobalAveragePool", ["hu"], ["pooled_now"])
        nodes += [helper.make_node("Loop", ["trips", "yes", "start"], ["counted"], body=body),
                  helper.make_node("Mul", ["counted", "nothing"], ["zero"]),
                  helper.make_node("Add", ["pooled_now", "zero"], ["pooled"])]
        weights += [numpy_helper.from_array(np.array(2_000_000_000, np.int64), "trips"),
                    numpy_helper.from_array(np.array(True), "yes"), numpy_helper.from_array(np.zeros(1, np.float32), "start"),
                    numpy_helper.from_array(np.zeros(1, np.float32), "nothing")]
    if open_shapes:
        nodes += [helper.make_node("Shape", ["hu"], ["n"], start=0, end=1),
                  helper.make_node("Concat", ["n", "rest_p"], ["shape_p"], axis=0),
                  helper.make_node("Concat", ["n", "rest_c"], ["shape_c"], axis=0),
                  helper.make_node("Reshape", [last[0], "shape_p"], ["probabilities"]),
                  helper.make_node("Reshape", [last[1], "shape_c"], ["cam"])]
        weights += [numpy_helper.from_array(np.array([-1], np.int64), "rest_p"),
                    numpy_helper.from_array(np.array([6, grid, -1], np.int64), "rest_c")]
    graph = helper.make_graph(
        nodes, "card_carrier", [helper.make_tensor_value_info("hu", TensorProto.FLOAT, list(hu_shape))],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, list(probabilities_shape)),
         helper.make_tensor_value_info("cam", TensorProto.FLOAT, list(cam_shape))], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    for key, value in (("ich.contract", "1"), ("ich.card", json.dumps(card)), (WEIGHTS_HASH_KEY, HASH_PLACEHOLDER),
                       (FILE_HASH_KEY, HASH_PLACEHOLDER)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return seal(model.SerializeToString())


@pytest.mark.parametrize("changes, words", [
    ({"hu_shape": (1, 1, 100_000, 100_000)}, "its input must take any number of slices of any size"),
    ({"classes": 5, "probabilities_shape": ("N", 5)}, "its 'probabilities' output has 5 classes"),
    ({"grid": 100, "cam_shape": ("N", 6, 100, 100)}, "its heat maps are 100 x 100"),
])
def test_a_model_declaring_shapes_outside_the_contract_is_refused_when_loaded(bundled_bytes, tmp_path, changes, words):
    """Found by an outside tester: a model declaring a 100,000 x 100,000 input or 4096 x 4096 heat maps ended
    triage with "unexpected error" after 6.6 GB, and five classes with numpy's broadcast message."""
    path = tmp_path / "hostile.onnx"
    path.write_bytes(_carrier(_card(bundled_bytes), **changes))
    with pytest.raises(ModelError, match=words):
        IchModel(path)


@pytest.mark.parametrize("changes", [
    {"classes": 5, "probabilities_shape": ("N", None), "open_shapes": True},
    {"grid": 100, "cam_shape": ("N", 6, "h", "w"), "open_shapes": True},
])
def test_a_model_whose_outputs_break_the_contract_at_run_time_is_refused_with_a_sentence(bundled_bytes, tmp_path,
                                                                                          changes):
    path = tmp_path / "open_shapes.onnx"
    path.write_bytes(_carrier(_card(bundled_bytes), **changes))
    model = IchModel(path)  # the declared shapes leave it open: the outputs themselves are checked
    with pytest.raises(ModelError, match=r"for 2 slices it gave probabilities \[2, \d\] and heat maps \[2, 6, "):
        model.run(np.zeros((2, 1, 16, 16), np.float32))


def test_cancelling_stops_a_model_run_in_progress(bundled_bytes, tmp_path):
    """A third tester: with a model whose batch never ended, Cancel did nothing and closing the window destroyed a
    running thread, which aborted the process. A Cancellation stops ONNX Runtime mid-run."""
    import threading
    import time

    from ich_viewer.core.inference import predict_series
    from ich_viewer.core.model import Cancellation, Cancelled

    path = tmp_path / "slow.onnx"
    path.write_bytes(_carrier(_card(bundled_bytes), slow=True))
    model, cancel, outcome = IchModel(path), Cancellation(), []

    def run():
        try:
            model.run(np.zeros((2, 1, 16, 16), np.float32), cancel=cancel)
        except Cancelled as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive()  # still counting
    cancel.set()
    worker.join(10)
    assert not worker.is_alive() and len(outcome) == 1
    cancel = Cancellation()
    threading.Timer(1.0, cancel.set).start()
    result = predict_series(model, np.zeros((3, 16, 16), np.float32), cancel=cancel)
    assert result.cancelled and not result.done.any()


def test_the_carrier_with_the_bundled_card_loads_and_runs(bundled_bytes, tmp_path):
    """The helper itself: with the real card it loads, so refusals below are the field, not the helper."""
    path = tmp_path / "card.onnx"
    path.write_bytes(_carrier(_card(bundled_bytes)))
    model = IchModel(path)
    assert model.card.raw == _card(bundled_bytes) and model.card.default_preset == "balanced"
    batch = model.run(np.zeros((2, 1, 16, 16), np.float32))
    assert batch.probabilities.shape == (2, 6) and batch.cam.shape == (2, 6, 2, 2)


def _set(card: dict, dotted: str, value) -> dict:
    card = json.loads(json.dumps(card))
    *parents, last = dotted.split(".")
    node = card
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return card


MALFORMED = [  # (field changed, value, words the sentence must contain)
    ("thresholds", ["balanced"], "'thresholds'"),
    ("thresholds", {"default": "balanced"}, "'thresholds' holds no threshold presets"),
    ("thresholds.balanced", 0.5, "'thresholds.balanced'"),
    ("thresholds.balanced.subdural", "0.5", "'thresholds.balanced' has no number between 0 and 1 for subdural"),
    ("thresholds.high_sensitivity.any", 1.5, "'thresholds.high_sensitivity'"),
    ("thresholds.default", "strict", "'thresholds.default'"),
    ("thresholds.default", 3, "'thresholds.default'"),
    ("operating_curves", [1, 2], "'operating_curves'"),
    ("operating_curves.any", "curve", "'operating_curves.any'"),
    ("operating_curves.any.recall", "high", "'operating_curves.any.recall'"),
    ("operating_curves.any.precision", [0.5, "x"], "'operating_curves.any.precision'"),
    ("operating_curves.subdural.specificity", [0.5, 0.6], "'operating_curves.subdural' differ in length"),
    ("cam_scale", [0.1] * 6, "'cam_scale'"),
    ("cam_scale.epidural", "big", "'cam_scale' has no positive number for epidural"),
    ("cam_scale.any", -1.0, "'cam_scale'"),
    ("windows", [{"name": "brain", "center": 40, "width": 80}], "'windows'"),
    ("windows.1.center", "forty", "'windows[1]'"),
    ("windows.2.width", 0, "'windows[2]'"),
    ("windows.0", "brain", "'windows[0]'"),
    ("classes", "any,epidural", "'classes'"),
    ("classes", list(reversed(CLASSES)), "not ['any'"),
    ("input", "HU", "'input'"),
    ("input.clip", [100, -20], "'input.clip'"),
    ("input.size", [160], "'input.size'"),
    ("name", 7, "'name'"),
    ("version", None, "'version'"),
    ("limitations", ["one hospital"], "'limitations'"),
    ("validation", "good", "'validation'"),
    ("validation.auc", [0.9], "'validation.auc'"),
    ("validation.ap.any", "high", "'validation.ap.any'"),
    ("validation.study_level.any", {"recall": "all"}, "'validation.study_level.any'"),
    ("training", [1], "'training'"),
]


@pytest.mark.parametrize("dotted, value, words", MALFORMED, ids=[f"{d}={v!r}"[:40] for d, v, _ in MALFORMED])
def test_each_malformed_card_field_is_refused_with_a_sentence_naming_it(bundled_bytes, tmp_path, dotted, value, words):
    path = tmp_path / "card.onnx"
    path.write_bytes(_carrier(_set(_card(bundled_bytes), dotted, value)))
    with pytest.raises(ModelError) as refusal:
        IchModel(path)
    message = str(refusal.value)
    assert message.startswith("card.onnx is not a model ICH Viewer can use: ") and words in message, message
    assert "changed or damaged" not in message  # sealed correctly: only the field is wrong


def test_a_card_that_is_not_an_object_or_not_json_or_not_utf8_is_a_sentence(bundled_bytes, tmp_path):
    path = tmp_path / "card.onnx"
    for card, words in (([1, 2], "not a JSON object"), ("text", "not a JSON object")):
        path.write_bytes(_carrier(card))
        with pytest.raises(ModelError, match=words):
            IchModel(path)
    data = bytearray(bundled_bytes)
    brace = _card_span(bundled_bytes)[0]
    data[brace + 3] = 0xFF  # inside "name": no longer UTF-8; the raw codec message was the complaint
    path.write_bytes(_resealed(bytes(data)))
    with pytest.raises(ModelError, match="metadata is not valid UTF-8 text") as refusal:
        IchModel(path)
    assert "codec" not in str(refusal.value)
    data[brace + 3] = ord("x")
    data[brace] = ord("[")  # valid UTF-8, not JSON
    path.write_bytes(_resealed(bytes(data)))
    with pytest.raises(ModelError, match="not valid JSON"):
        IchModel(path)


def test_missing_or_wrong_checksums_are_refused_even_when_everything_else_is_right(bundled_bytes, tmp_path):
    path = tmp_path / "model.onnx"
    data = bundled_bytes
    # Without the two entries (the file as it was before sealing): refused, saying what is missing.
    weights_entry = data.rfind(b"\x72", 0, data.find(WEIGHTS_HASH_KEY.encode()))
    path.write_bytes(data[:weights_entry])
    with pytest.raises(ModelError, match="carries no integrity checksums"):
        IchModel(path)
    # A wrong weights checksum under a right file checksum: the weights check alone refuses it.
    wrong = bytearray(data)
    wrong[_value(data, WEIGHTS_HASH_KEY):_value(data, WEIGHTS_HASH_KEY) + 64] = b"f" * 64
    wrong = _seal_file_only(bytes(wrong))
    assert file_digests(wrong)[1] == file_digests(wrong)[2]
    path.write_bytes(wrong)
    with pytest.raises(ModelError, match="changed or damaged since it was exported"):
        IchModel(path)
    # The file-checksum entry twice (which value would be checked is ambiguous): refused.
    path.write_bytes(data + data[data.rfind(b"\x72", 0, data.find(FILE_HASH_KEY.encode())):])
    with pytest.raises(ModelError, match="changed or damaged"):
        IchModel(path)


def test_the_bundled_checksums_are_the_definitions_in_the_contract(bundled_bytes):
    """Recomputed independently of the loader's byte walker, with onnx, from the written definitions."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load_from_string(bundled_bytes)
    meta = {p.key: p.value for p in proto.metadata_props}
    serialized = [t.SerializeToString() for t in proto.graph.initializer]
    expected = hashlib.sha256(b"".join(len(b).to_bytes(8, "little") + b for b in serialized)).hexdigest()
    assert meta[WEIGHTS_HASH_KEY] == expected == weights_sha256(bundled_bytes)
    value = bundled_bytes.find(FILE_HASH_KEY.encode()) + len(FILE_HASH_KEY) + 2
    zeroed = bundled_bytes[:value] + b"0" * 64 + bundled_bytes[value + 64:]
    assert meta[FILE_HASH_KEY] == hashlib.sha256(zeroed).hexdigest() == file_digests(bundled_bytes)[2]
    assert list(meta)[-2:] == [WEIGHTS_HASH_KEY, FILE_HASH_KEY]
