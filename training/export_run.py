"""The ``export`` step: checkpoint + model card -> ONNX, checked against PyTorch before it is handed over."""

from __future__ import annotations

import json
import time

import numpy as np
import onnxruntime as ort
import torch

from training.config import Config
from training.data.cache import Cache
from training.evaluate import checkpoint_sha256, load_trained
from training.export import export_onnx, quantize_int8
from training.metrics import per_class_auc
from training.train import split_rows


def run_export(config: Config) -> dict:
    if not config.export.license.strip():
        raise ValueError("export.license is not set: state the licence the training data allow for the weights "
                         "(--set 'export.license=\"...\"' or the recipe's [export] table)")
    card_path = config.run_dir / "eval" / "card.json"
    if not card_path.is_file():
        raise FileNotFoundError(f"no model card at {card_path}: run `python -m training evaluate` first")
    card = json.loads(card_path.read_text())
    model, _ = load_trained(config)
    if card.get("training", {}).get("checkpoint_sha256") != checkpoint_sha256(config):  # not stale figures on new weights
        raise ValueError(f"the model card in {card_path.parent} was written for another checkpoint than "
                         f"{config.run_dir / 'checkpoint.pt'} (trained again since): run `python -m training evaluate` "
                         "again first")
    path = export_onnx(model, config.run_dir / "model.onnx", card, opset=config.export.opset,
                       sample_size=config.model.size)
    cache = Cache.open(config.cache_dir)
    train_rows, val_rows = split_rows(cache, config)
    if not len(val_rows):  # trained on every patient: check on (and report INT8 over) a sample of its training slices
        rng = np.random.default_rng(config.seed)
        val_rows = np.sort(rng.choice(train_rows, min(512, len(train_rows)), replace=False))
    sample = np.sort(val_rows[:16])
    hu = cache.images[sample].astype(np.float32)[:, None]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(["probabilities"], {"hu": hu})[0]
    with torch.no_grad():
        torch_probs = torch.sigmoid(model(torch.from_numpy(hu))).numpy()
    difference = float(np.abs(onnx_probs - torch_probs).max())
    if difference > 1e-4:
        raise RuntimeError(f"ONNX Runtime and PyTorch disagree by {difference:.2e} (> 1e-4); not exported")
    summary = {"onnx": str(path), "megabytes": round(path.stat().st_size / 2**20, 2), "max_prob_difference": difference}
    if config.export.int8:
        summary["int8"] = _int8(config, path, cache, train_rows, val_rows)
    (config.run_dir / "export.json").write_text(json.dumps(summary, indent=1))  # the bundle step reports it
    return summary


def _int8(config: Config, path, cache: Cache, train_rows, val_rows) -> dict:
    """Quantise, then report the AUC change on the validation patients (a run trained on every patient: on
    a sample of its training slices, which shows whether quantisation keeps the ranking, not how good it is)
    next to the speed-up."""
    rng = np.random.default_rng(config.seed)
    calibration = cache.images[np.sort(rng.choice(train_rows, min(128, len(train_rows)), replace=False))]
    int8_path = quantize_int8(path, config.run_dir / "model.int8.onnx", calibration.astype(np.float32)[:, None])
    result = {"onnx": str(int8_path), "megabytes": round(int8_path.stat().st_size / 2**20, 2),
              "slices": "training" if set(val_rows.tolist()) <= set(train_rows.tolist()) else "validation"}
    rows = np.sort(val_rows)
    labels = cache.labels[rows]
    for name, p in (("fp32", path), ("int8", int8_path)):
        session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        probs, t0 = [], time.perf_counter()
        for start in range(0, len(rows), 16):
            probs.append(session.run(["probabilities"], {"hu": cache.images[rows[start:start + 16]].astype(np.float32)[:, None]})[0])
        seconds = time.perf_counter() - t0
        probs = np.concatenate(probs)
        aucs = [auc for auc in per_class_auc(labels, probs).values() if auc is not None]
        result[f"{name}_mean_auc"] = round(float(np.mean(aucs)), 4) if aucs else None
        result[f"{name}_ms_per_slice"] = round(1000 * seconds / max(len(rows), 1), 2)
    return result
