"""The model's in-graph preprocessing, and the ONNX export against PyTorch and autograd Grad-CAM."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.errors import ModelError
from tests.conftest import tiny_card
from ich_viewer.core.model import FILE_HASH_KEY, WEIGHTS_HASH_KEY, IchModel
from ich_viewer.core.windows import SIGMOID_EPSILON, apply_sigmoid
from training.config import from_dict
from training.data.cache import to_cache_size
from training.export import export_onnx, read_card, save_sealed
from training.model import build_model

CARD = tiny_card(name="test", version="0", intended_use="tests", limitations="none")


def small_model(head="mlp", size=96, **model):
    torch.manual_seed(0)
    return build_model(from_dict({"model": {"arch": "resnet18", "size": size, "head": head, **model}})).eval()


def hu_batch(n=3, size=96, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.normal(30, 60, (n, 1, size, size))).astype(np.float32))


def test_logits_for_any_matrix_size_and_the_cam_layer_is_layer4():
    model = small_model()
    for shape in [(2, 1, 96, 96), (1, 1, 128, 100)]:
        assert model(torch.zeros(shape)).shape == (shape[0], 6)
    assert model.cam_layer is model.trunk[7] and model.cam_layer[-1].conv2.out_channels == 512


def test_clip_makes_values_outside_the_training_range_invisible():
    model = small_model(clip=[-20, 100])
    hu = hu_batch()
    with torch.no_grad():
        assert torch.equal(model(hu), model(hu.clamp(-20, 100)))
        assert not torch.equal(small_model()(hu), small_model()(hu.clamp(-20, 100)))


def test_cache_resize_and_graph_resize_agree():
    """Training sees cache images resized by to_cache_size; at run time the graph resizes 512 input."""
    model = small_model(size=64)
    hu512 = hu_batch(2, 128)
    cached = torch.from_numpy(np.stack([to_cache_size(h[0].numpy(), 64) for h in hu512]).astype(np.float32))[:, None]
    with torch.no_grad():
        direct, via_cache = torch.sigmoid(model(hu512)), torch.sigmoid(model(cached))
    assert float((direct - via_cache).abs().max()) < 0.02  # only the cache's rounding to whole HU differs


def test_sigmoid_window_matches_the_viewers_display_window():
    model = small_model(windows=[{"name": "brain", "center": 40, "width": 80, "function": "sigmoid"}] * 3)
    hu = torch.linspace(-100, 200, 96 * 96).reshape(1, 1, 96, 96)
    pre = model.preprocess
    channel = (pre(hu)[0, 0] * pre.std + pre.mean).detach().numpy()
    expected = apply_sigmoid(hu[0, 0].numpy(), 40, 80)
    assert SIGMOID_EPSILON == 1 / 255 and np.abs(channel - expected).max() < 1e-5


def test_learned_windows_are_trainable_parameters():
    model = small_model(windows=[{"name": "w", "center": 40, "width": 80, "learned": True}] * 3)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"preprocess.center", "preprocess.log_width"} <= names
    assert "preprocess.center" not in {n for n, _ in small_model().named_parameters()}


def test_imagenet_weights_are_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        small_model(pretrained="imagenet")


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_onnx_matches_pytorch_and_autograd_grad_cam(tmp_path, head):
    model = small_model(head, size=128)
    path = export_onnx(model, tmp_path / "m.onnx", CARD, sample_size=128)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "cam", "logits"]
    hu = hu_batch(3, 128)
    probabilities, cam, logits = session.run(None, {"hu": hu.numpy()})
    with torch.no_grad():
        reference = torch.sigmoid(model(hu)).numpy()
    assert np.abs(probabilities - reference).max() < 1e-4
    assert cam.shape == (3, 6, 4, 4) and cam.min() >= 0
    grad_cam = GradCAM(model=model, target_layers=[model.cam_layer])
    for c in range(6):
        expected = grad_cam(input_tensor=hu, targets=[ClassifierOutputTarget(c)] * 3)
        # pytorch-grad-cam's own normalisation: min-max, resize to the input, min-max again.
        ours = scale_cam_image(scale_cam_image(cam[:, c], (128, 128)))
        assert np.abs(ours - expected).max() < 1e-4, CLASSES[c]
    # Dynamic batch and matrix size: a 512x512 slice works and gives the same grid.
    assert session.run(["cam"], {"hu": hu_batch(1, 512).numpy()})[0].shape == (1, 6, 4, 4)


def test_the_card_travels_in_the_metadata_and_bad_cards_are_refused(tmp_path):
    model = small_model(size=64)
    path = export_onnx(model, tmp_path / "m.onnx", CARD, sample_size=64)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["ich.contract"] == "1" and json.loads(meta["ich.card"]) == CARD == read_card(path)
    with pytest.raises(ValueError, match="lacks limitations"):
        export_onnx(model, tmp_path / "x.onnx", {k: v for k, v in CARD.items() if k != "limitations"})
    with pytest.raises(ValueError, match="classes"):
        export_onnx(model, tmp_path / "x.onnx", {**CARD, "classes": list(reversed(CLASSES))})
    # The exporter runs the viewer's own card check: a card the viewer would refuse is never written.
    with pytest.raises(ValueError, match="no threshold presets"):
        export_onnx(model, tmp_path / "x.onnx", {**CARD, "thresholds": {}})


def test_the_export_is_sealed_with_both_checksums_and_a_resealed_edit_loads(tiny_model, tmp_path):
    """export_onnx writes the contract's ich.weights_sha256 and ich.file_sha256 (definitions in
    ich_viewer.core.model), recomputed here with onnx from the written definitions."""
    data = tiny_model.read_bytes()
    proto = onnx.load_from_string(data)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert list(meta) == ["ich.contract", "ich.card", WEIGHTS_HASH_KEY, FILE_HASH_KEY]
    serialized = [t.SerializeToString() for t in proto.graph.initializer]
    assert len(serialized) > 20  # every convolution (batch norm folded in) and the head
    weights = hashlib.sha256(b"".join(len(b).to_bytes(8, "little") + b for b in serialized)).hexdigest()
    assert meta[WEIGHTS_HASH_KEY] == weights
    value = data.find(FILE_HASH_KEY.encode()) + len(FILE_HASH_KEY) + 2
    assert data[value:value + 64].decode() == meta[FILE_HASH_KEY]
    assert meta[FILE_HASH_KEY] == hashlib.sha256(data[:value] + b"0" * 64 + data[value + 64:]).hexdigest()
    # A card edited after export: saved plainly, the old seal refuses it; re-sealed, it loads with the
    # same weights checksum and a new file checksum.
    card = {**json.loads(meta["ich.card"]), "version": "0.0.2"}
    next(p for p in proto.metadata_props if p.key == "ich.card").value = json.dumps(card)
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="changed or damaged since it was exported"):
        IchModel(tmp_path / "plain.onnx")
    resealed = save_sealed(proto, tmp_path / "resealed.onnx")
    assert IchModel(resealed).card.version == "0.0.2"
    new = {p.key: p.value for p in onnx.load(str(resealed)).metadata_props}
    assert len(new) == 4 and new[WEIGHTS_HASH_KEY] == weights and new[FILE_HASH_KEY] != meta[FILE_HASH_KEY]
