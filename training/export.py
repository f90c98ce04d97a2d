"""Export a trained ``IchResNet`` to the one ONNX file the viewer reads (model contract version 1).

Grad-CAM is part of the graph. With global average pooling, d logit_c / d A[k,i,j] = g_ck / (h w)
where g = d logit / d pooled, so Grad-CAM's channel weights are g_ck / (h w), spatially constant:
  linear head:          g = W                                   (constant)
  Linear-ReLU-Linear:   g = W2 diag(1[W1 p + b1 > 0]) W1        (per image, closed form)
and cam_c = ReLU(sum_k g_ck / (h w) A_k). Ordinary graph ops, no autograd at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ich_viewer.core.contract import CARD_KEY, CONTRACT_KEY, CONTRACT_VERSION, INPUT_NAME, card_problem
from ich_viewer.core.model import FILE_HASH_KEY, HASH_PLACEHOLDER, WEIGHTS_HASH_KEY, seal


class ContractGraph(nn.Module):
    """hu -> (probabilities, cam, logits), the contract's outputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, hu: torch.Tensor):
        features = self.model.features(hu)  # [N, K, h, w]
        pooled = features.mean(dim=(2, 3))
        head = self.model.head
        linears = [m for m in head if isinstance(m, nn.Linear)]
        if len(linears) == 1:
            logits = linears[0](pooled)
            grad = linears[0].weight.unsqueeze(0).expand(hu.shape[0], -1, -1)  # [N, C, K]
        else:
            first, last = linears
            hidden = first(pooled)
            logits = last(torch.relu(hidden))
            active = (hidden > 0).to(pooled.dtype)  # [N, H]
            grad = torch.matmul(last.weight.unsqueeze(0) * active.unsqueeze(1), first.weight)  # [N, C, K]
        area = features.shape[2] * features.shape[3]
        cam = torch.relu(torch.einsum("nck,nkhw->nchw", grad / area, features))
        return torch.sigmoid(logits), cam, logits


def export_onnx(model: nn.Module, path: str | Path, card: dict, *, opset: int = 18, sample_size: int = 256) -> Path:
    """Write ``model`` (eval mode, CPU, float32) as a contract-conforming ONNX file with ``card`` inside."""
    problem = card_problem(card)  # the viewer's own check: a card it would refuse is never written
    if problem:
        raise ValueError(f"the model card does not fit the contract: {problem}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = ContractGraph(model.float().cpu()).eval()
    sample = torch.zeros(2, 1, sample_size, sample_size)
    with torch.no_grad():
        torch.onnx.export(
            graph, (sample,), str(path), input_names=[INPUT_NAME], output_names=["probabilities", "cam", "logits"],
            opset_version=opset, dynamo=True, external_data=False, optimize=True, verbose=False,
            dynamic_shapes=({0: torch.export.Dim("N"), 2: torch.export.Dim("H"), 3: torch.export.Dim("W")},),
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in ((CONTRACT_KEY, CONTRACT_VERSION), (CARD_KEY, json.dumps(card, separators=(",", ":")))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"{card['name']} {card['version']}: {card['intended_use']}"
    onnx.checker.check_model(proto, full_check=True)
    return save_sealed(proto, path)


def save_sealed(proto: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``proto`` as one file carrying ``ich.weights_sha256`` and ``ich.file_sha256`` (the contract's
    Integrity section; defined in :mod:`ich_viewer.core.model`), replacing any it had.

    Every writer of a model the viewer loads goes through here: the viewer refuses a file without them.
    The two entries go last with placeholder values, are serialized once, and :func:`seal` writes the
    values over the placeholders in the bytes (a re-serialization could move them). ``proto`` keeps the
    placeholders."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in (WEIGHTS_HASH_KEY, FILE_HASH_KEY)]
    del proto.metadata_props[:]
    for key, value in kept + [(WEIGHTS_HASH_KEY, HASH_PLACEHOLDER), (FILE_HASH_KEY, HASH_PLACEHOLDER)]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    path.write_bytes(seal(proto.SerializeToString()))
    return path


def read_card(path: str | Path) -> dict:
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(meta["ich.card"])


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> Path:
    """Static INT8 quantisation with ONNX Runtime, calibrated on training HU slices [N,1,H,W]."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"hu": calibration[i:i + 8].astype(np.float32)} for i in range(0, len(calibration), 8)])

        def get_next(self):
            return next(self.batches, None)

    prepared = out_path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    # The convolutions are the time (90%); quantising the residual Adds and pools too keeps the trunk in
    # INT8 between them. Head and CAM stay float. reduce_range (7-bit weights): without it, the u8s8
    # kernels of AVX2 CPUs without VNNI saturate and phantom probabilities moved by up to 0.38
    # (mean 0.075); with it by at most 0.03.
    quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    reduce_range=True, op_types_to_quantize=["Conv", "Add", "Relu", "MaxPool", "GlobalAveragePool"])
    prepared.unlink(missing_ok=True)
    proto = onnx.load(str(out_path))
    source = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}
    del proto.metadata_props[:]
    for key, value in source.items():  # the FP32 card; save_sealed replaces the FP32 checksums
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return save_sealed(proto, out_path)
