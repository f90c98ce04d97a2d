"""The inference engine: contract checks, batching and streaming, thresholds, CAM display values."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import onnx
import pytest

import ich_viewer
from ich_viewer.core.errors import ModelError
from ich_viewer.core.inference import cam_overlay, flagged_ranges, predict_series, summarize
from ich_viewer.core.model import IchModel, sha256
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.core.thresholds import Thresholds
from ich_viewer.core.volume import VolumeLoader, read_volume
from tests.conftest import tiny_card


def _rewrite(src, dst, card=None, contract="1", drop_output=None):
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    if card is not None:
        meta["ich.card"] = json.dumps(card)
    if contract is None:
        meta.pop("ich.contract")
    else:
        meta["ich.contract"] = contract
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    if drop_output:
        keep = [o for o in proto.graph.output if o.name != drop_output]
        del proto.graph.output[:]
        proto.graph.output.extend(keep)
    onnx.save(proto, str(dst))
    return dst


# --------------------------------------------------------------------------- contract


def test_a_conforming_model_loads_with_its_card(tiny_model):
    model = IchModel(tiny_model)
    assert model.card.name == "tiny-test-model" and model.card.default_preset == "balanced"
    assert list(model.card.presets) == ["balanced", "high_sensitivity", "precision_0.7"]
    batch = model.run(np.zeros((2, 1, 80, 80), np.float32))
    assert batch.probabilities.shape == (2, 6) and batch.cam.shape == (2, 6, 2, 2)
    assert batch.logits.shape == (2, 6) and list(batch.indices) == [0, 1]  # the optional output travels too
    np.testing.assert_allclose(batch.probabilities, 1 / (1 + np.exp(-batch.logits)), atol=1e-6)


def test_the_bundled_model_is_verified_against_its_manifest(tiny_model, tmp_path):
    shutil.copy(tiny_model, tmp_path / "model.onnx")
    manifest = {"models": [{"file": "model.onnx", "sha256": sha256(tiny_model)}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert IchModel.bundled(tmp_path).card.name == "tiny-test-model"
    with open(tmp_path / "model.onnx", "ab") as f:
        f.write(b"\0")  # one byte appended: still loads in onnxruntime, but it is not the shipped file
    with pytest.raises(ModelError, match="changed or damaged"):
        IchModel.bundled(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ModelError, match="manifest"):
        IchModel.bundled(tmp_path)


def test_a_model_path_the_user_named_wrongly_is_not_answered_with_reinstall(tmp_path):
    with pytest.raises(ModelError, match=r"^The model file nothing.onnx was not found. Check the path") as missing:
        IchModel(tmp_path / "nothing.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelError, match="is a folder, not a model file") as folder:
        IchModel(tmp_path / "folder.onnx")
    assert "Reinstall" not in str(missing.value) + str(folder.value)
    with pytest.raises(ModelError, match="was not found. Reinstall ICH Viewer"):  # the bundled file: installation
        IchModel(tmp_path / "nothing.onnx", expected_sha256="0" * 64)


@pytest.mark.parametrize("case, message", [
    ("missing", "was not found"),
    ("corrupt", "not a readable ONNX model"),
    ("no_cam", "no 'cam' output"),
    ("class_order", "not \\['any'"),
    ("no_contract", "contract version 1"),
    ("bad_card", "not valid JSON"),
    ("no_limitations", "lacks limitations"),
])
def test_non_conforming_models_are_refused_with_a_sentence(tiny_model, tmp_path, case, message):
    path = tmp_path / f"{case}.onnx"
    if case == "corrupt":
        path.write_bytes(b"this is not an onnx file" * 10)
    elif case == "no_cam":
        _rewrite(tiny_model, path, drop_output="cam")
    elif case == "class_order":
        _rewrite(tiny_model, path, card=tiny_card(classes=list(reversed(CLASSES))))
    elif case == "no_contract":
        _rewrite(tiny_model, path, contract=None)
    elif case == "bad_card":
        proto = onnx.load(str(tiny_model))
        next(p for p in proto.metadata_props if p.key == "ich.card").value = "{not json"
        onnx.save(proto, str(path))
    elif case == "no_limitations":
        card = tiny_card()
        del card["limitations"]
        _rewrite(tiny_model, path, card=card)
    with pytest.raises(ModelError, match=message):
        IchModel(path)


# --------------------------------------------------------------------------- running a series


def test_batches_stream_and_cover_every_slice(tiny_model):
    model = IchModel(tiny_model)
    volume = make_phantom(seed=1, n_slices=20, size=64).hu
    batches = []
    result = predict_series(model, volume, batch_size=8, on_batch=lambda batch: batches.append(batch.indices))
    assert [len(b) for b in batches] == [8, 8, 4] and sorted(np.concatenate(batches)) == list(range(20))
    assert 10 in batches[0]  # the middle slice, shown first, is in the first batch
    direct = model.run(volume[:, None])
    assert result.complete and np.allclose(result.probabilities, direct.probabilities, atol=1e-5)
    assert np.allclose(result.cam, direct.cam, atol=1e-5) and np.allclose(result.logits, direct.logits, atol=1e-5)


def test_cancel_stops_between_batches(tiny_model):
    model = IchModel(tiny_model)
    cancel = threading.Event()
    result = predict_series(model, np.zeros((30, 64, 64), np.float32), batch_size=5,
                            on_batch=lambda *_: cancel.set(), cancel=cancel)
    assert result.cancelled and result.done.sum() == 5 and np.isnan(result.probabilities[~result.done]).all()


def test_a_loader_gives_the_same_results_as_the_array(tiny_model, tmp_path):
    write_phantom_study(make_phantom(seed=2, n_slices=10, size=64), tmp_path / "s")
    series = ich_viewer.load(tmp_path / "s").series[0]
    model = IchModel(tiny_model)
    streamed = predict_series(model, VolumeLoader(series), len(series), batch_size=4)
    assert np.allclose(streamed.probabilities, predict_series(model, read_volume(series)).probabilities, atol=1e-6)


# --------------------------------------------------------------------------- thresholds and read-outs


def test_threshold_readouts_read_the_cards_measured_points(tiny_model):
    thresholds = Thresholds(IchModel(tiny_model).card)
    # Curve points (0, 0.5, 1): precision 0.1, 0.6, 1.0; recall 1, 0.5, 0; specificity 0, 0.8, 1.
    assert thresholds.readout("subdural") == {"precision": 0.6, "recall": 0.5, "specificity": 0.8, "measured_at": 0.5}
    # Between two points the one at or below is read (everything flagged at 0.25 is flagged at 0), not a line
    # between them, which made up points no data has.
    assert thresholds.readout("subdural", 0.25) == {"precision": 0.1, "recall": 1.0, "specificity": 0.0,
                                                    "measured_at": 0.0}
    assert thresholds.readout("any", 0.75) == {"precision": 0.6, "recall": 0.5, "specificity": 0.8, "measured_at": 0.5}


def test_presets_overrides_and_flags(tiny_model):
    thresholds = Thresholds(IchModel(tiny_model).card)
    probabilities = np.array([[0.3] * 6, [0.6] * 6, [np.nan] * 6], np.float32)
    assert thresholds.flags(probabilities)[:, 0].tolist() == [False, True, False]
    thresholds.apply_preset("high_sensitivity")
    assert thresholds.flags(probabilities)[:, 0].tolist() == [True, True, False]
    thresholds.set("subdural", 0.7)
    assert thresholds.preset == "custom" and thresholds.flags(probabilities)[:, 5].tolist() == [False, False, False]
    with pytest.raises(ValueError, match="unknown preset"):
        thresholds.apply_preset("nope")


def test_cam_is_hidden_under_threshold_and_on_a_fixed_scale():
    cam = np.array([[0.0, 0.1], [0.025, 0.05]], np.float32)
    assert cam_overlay(cam, (64, 64), scale=0.05, probability=0.3, threshold=0.5) is None
    shown = cam_overlay(cam, (64, 64), scale=0.05, probability=0.3, threshold=0.5, show_below_threshold=True)
    assert shown.shape == (64, 64) and shown.max() == 1.0 and shown.min() == 0.0
    quiet = cam_overlay(cam * 0.01, (64, 64), scale=0.05, probability=0.9, threshold=0.5)
    assert quiet.max() <= 0.021  # a weak CAM stays dark: no per-image min-max stretching


def test_study_summary_and_flagged_ranges():
    assert flagged_ranges(np.array([0, 1, 1, 0, 1, 0, 1, 1, 1])) == [(1, 2), (4, 4), (6, 8)]
    probabilities = np.zeros((5, 6), np.float32)
    probabilities[1:3, 5] = [0.7, 0.9]
    summary = summarize(probabilities, np.full(6, 0.5))
    assert summary["subdural"] == {"max_probability": pytest.approx(0.9), "top_slice": 2, "threshold": 0.5,
                                   "flagged": True, "flagged_slices": 2, "flagged_ranges": [(1, 2)]}
    assert not summary["epidural"]["flagged"]


def test_display_scale_is_fixed_per_series_and_never_below_the_models():
    from ich_viewer.core.inference import SeriesPrediction, display_scale

    prediction = SeriesPrediction.empty(4, (2, 2))
    assert display_scale(prediction, 5, 0.05) == 0.05  # nothing computed yet: the card's scale
    prediction.cam[:, 5] = np.array([0.01, 0.02, 0.4, 0.03])[:, None, None]
    prediction.done[:] = True
    scale = display_scale(prediction, 5, 0.05)
    assert 0.38 < scale <= 0.4  # a series far hotter than the validation data: its own peak
    prediction.cam[2, 5] = 0.01
    assert display_scale(prediction, 5, 0.05) == 0.05  # a quiet series keeps the model's scale


def _scaled_output(src, dst, factor: float):
    """The model with its probabilities multiplied by ``factor`` in the graph: NaN or 3 stand for a faulty
    export that still meets the contract's shapes."""
    from onnx import helper, numpy_helper

    from training.export import save_sealed

    proto = onnx.load(str(src))
    for node in proto.graph.node:
        node.output[:] = ["probabilities_raw" if o == "probabilities" else o for o in node.output]
    proto.graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "faulty_factor"))
    proto.graph.node.append(helper.make_node("Mul", ["probabilities_raw", "faulty_factor"], ["probabilities"]))
    return save_sealed(proto, dst)  # sealed as the exporter seals: the viewer refuses an unsealed change


@pytest.mark.parametrize("factor", [float("nan"), 3.0], ids=["NaN", "above 1"])
def test_a_model_giving_invalid_probabilities_marks_its_slices_instead_of_a_clean_study(tiny_model, tmp_path,
                                                                                        factor):
    """Found by an outside tester: a model whose outputs were NaN read as "nothing flagged" (NaN is never above
    a threshold), and one multiplying by 3 flagged with "probabilities" of 1.9."""
    from ich_viewer.core.inference import INVALID_OUTPUT

    model = IchModel(_scaled_output(tiny_model, tmp_path / "faulty.onnx", factor))
    hu = make_phantom(seed=1, subtypes=["subdural"], n_slices=3, size=64).hu
    result = predict_series(model, hu)
    if np.isnan(factor):
        assert result.failed == {0: INVALID_OUTPUT, 1: INVALID_OUTPUT, 2: INVALID_OUTPUT}
        assert np.isnan(result.probabilities).all()
    else:  # the tiny model's sigmoids times 3: the slices whose outputs stay in [0, 1] keep them
        fine = predict_series(IchModel(tiny_model), hu).probabilities * 3
        over = (fine > 1).any(1)
        assert over.any() and set(result.failed) == set(np.flatnonzero(over).tolist())
        assert not np.any(result.probabilities > 1)
