"""Inference speed: ONNX Runtime (FP32, INT8) against PyTorch eager on the same weights, and end to end.

    .venv/bin/python bench/bench_inference.py [--config ctich_resnet18] [--repeats 7] [--data ../shared/data/cq500-ct0]

1. Per-slice latency at batch 1, 16 and 32 (512x512 HU input, the graph resizes), median of
   ``--repeats`` interleaved runs after a warm-up, for: PyTorch eager (torch.inference_mode, all
   threads) giving logits only, and giving the contract's outputs (probabilities and the closed-form
   Grad-CAM of ``ContractGraph``, the same job the ONNX file does); the exported ONNX in ONNX Runtime;
   its INT8 static quantisation. Speed-ups are medians of ratios paired within a repeat. The weights are the run's
   checkpoint when ``runs/<config>/checkpoint.pt`` exists, else a seeded random init (same cost).
2. End to end in a fresh process each: files -> ``ich_viewer.load`` -> decode -> all probabilities and
   CAMs (upsampled to 512x512 for the top class of every slice), on a 36-slice phantom study and on
   the real 238-slice CQ500 series; wall time and peak resident memory.
The machine is shared and noisy: compare the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

END_TO_END = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import ich_viewer
from ich_viewer.core.model import IchModel
from ich_viewer.core.inference import predict_series, cam_overlay
from ich_viewer.core.volume import VolumeLoader
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
model = IchModel(sys.argv[2])
series = ich_viewer.load(sys.argv[1]).series[0]
result = predict_series(model, VolumeLoader(series), len(series))
top = np.nanargmax(result.probabilities, axis=1)
for i, c in enumerate(top):  # every slice's CAM upsampled once, as scrolling through the study would
    cam_overlay(result.cam[i, c], (series.rows, series.columns), 1.0, 1.0, 0.0)
elapsed = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (torch-laden) parent process.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "import_s": t_import, "slices": len(series), "rss_mb": hwm / 1024}))
"""


BATCHES = (1, 16, 32)
EAGER_SAME = "PyTorch eager, same outputs (probabilities + CAM)"
EAGER_LOGITS = "PyTorch eager, logits only"
# Untimed pause before each call: ONNX Runtime's and OpenMP's worker threads spin-wait for a while after
# a run, and without it they steal the cores from whichever engine runs next.
SETTLE_S = 0.3


def _latency(model, fp32: Path, int8: Path, repeats: int):
    """ms/slice per engine and batch (medians), and each ONNX engine's paired speed-up over both eager runs.

    Interleaved: every repeat times each engine once in turn, so the shared machine's slow spells fall on
    all of them alike, and a ratio is taken within one repeat before the median."""
    import ich_viewer  # noqa: F401 - first: turns ONNX Runtime's telemetry off
    import onnxruntime as ort
    import torch

    from training.export import ContractGraph

    graph = ContractGraph(model).eval()
    sessions = {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for name, path in (("ONNX Runtime FP32", fp32), ("ONNX Runtime INT8", int8))}
    rng = np.random.default_rng(0)
    engines = {name: {} for name in (EAGER_LOGITS, EAGER_SAME, *sessions)}
    ratios = {name: {} for name in sessions}
    for batch in BATCHES:
        hu = rng.normal(30, 300, (batch, 1, 512, 512)).astype(np.float32)
        tensor = torch.from_numpy(hu)

        def eager(net):
            def run():
                with torch.inference_mode():
                    net(tensor)
            return run

        calls = {EAGER_LOGITS: eager(model), EAGER_SAME: eager(graph)}
        for name, session in sessions.items():
            calls[name] = lambda session=session: session.run(["probabilities", "cam"], {"hu": hu})
        times = {name: [] for name in calls}
        for fn in calls.values():
            fn()  # warm-up
        for _ in range(repeats):
            for name, fn in calls.items():
                time.sleep(SETTLE_S)
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        for name, seconds in times.items():
            engines[name][batch] = 1000 * statistics.median(seconds) / batch
        for name in sessions:
            for base in (EAGER_SAME, EAGER_LOGITS):
                ratios[name][base, batch] = statistics.median(b / o for b, o in zip(times[base], times[name]))
    return engines, ratios


def build(config_name: str, workdir: Path):
    import torch

    from training.config import load_config
    from training.export import export_onnx, quantize_int8
    from training.model import build_model
    from ich_viewer.core.phantom import make_phantom
    from tests.conftest import tiny_card

    config = load_config(config_name)
    torch.manual_seed(0)
    model = build_model(config).eval()
    checkpoint = REPO / config.run_dir / "checkpoint.pt"
    source = "random init"
    if checkpoint.is_file():
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
        source = str(checkpoint.relative_to(REPO))
    fp32 = export_onnx(model, workdir / "model.onnx", tiny_card(architecture=config.model.arch),
                       sample_size=config.model.size)
    calibration = make_phantom(seed=1, n_slices=32, size=512).hu[:, None]
    int8 = quantize_int8(fp32, workdir / "model.int8.onnx", calibration)
    return config, model, fp32, int8, source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ctich_resnet18")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cq500-ct0")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import ich_viewer  # noqa: F401 - first: turns ONNX Runtime's telemetry off
    import torch

    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config, model, fp32, int8, source = build(args.config, tmp)
        print(f"{config.model.arch} at {config.model.size} px ({source}); torch threads {torch.get_num_threads()}; "
              f"median of {args.repeats}\n")
        engines, ratios = _latency(model, fp32, int8, args.repeats)
        print("| engine | " + " | ".join(f"batch {b} (ms/slice)" for b in BATCHES) + " |")
        print("|---|" + "---:|" * len(BATCHES))
        for name, per_batch in engines.items():
            print(f"| {name} | " + " | ".join(f"{per_batch[b]:.1f}" for b in BATCHES) + " |")
        print("\nSpeed-up, the median of paired ratios (each repeat runs every engine once, in turn):\n")
        print("| engine | " + " | ".join(f"vs {base} b{b}" for base in ("same outputs", "logits only")
                                          for b in BATCHES) + " |")
        print("|---|" + "---:|" * 2 * len(BATCHES))
        for name, row in ratios.items():
            print(f"| {name} | " + " | ".join(f"{row[base, b]:.2f}x" for base in (EAGER_SAME, EAGER_LOGITS)
                                              for b in BATCHES) + " |", flush=True)

        print("\nEnd to end (fresh process each; files -> probabilities + CAMs for every slice):\n")
        print("| study | model | slices | median s | ms per slice | peak RSS MB |")
        print("|---|---|---:|---:|---:|---:|")
        phantom = tmp / "phantom"
        write_phantom_study(make_phantom(seed=3, n_slices=36), phantom)
        for label, folder in (("phantom, every subtype", phantom), ("CQ500-CT-0 (real, JPEG Lossless)", args.data)):
            if not folder.is_dir():
                print(f"| {label} | | - | skipped: {folder} not found | | |")
                continue
            for precision, path in (("FP32", fp32), ("INT8", int8)):
                runs = []
                for _ in range(max(3, args.repeats // 2)):
                    out = subprocess.run([sys.executable, "-c", END_TO_END, str(folder), str(path)],
                                         capture_output=True, text=True, check=True, cwd=REPO)
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                seconds = statistics.median(r["seconds"] for r in runs)
                rss = statistics.median(r["rss_mb"] for r in runs)
                n = runs[0]["slices"]
                print(f"| {label} | {precision} | {n} | {seconds:.2f} | {1000 * seconds / n:.1f} | {rss:.0f} |",
                      flush=True)
    print("\nGoals (2-core CPU): ResNet-18-class < 10 ms/slice; 36-slice study < 1 s; >= 3x PyTorch eager; "
          "< 600 MB with the 238-slice series. Seed paper: 366 ms/slice, 2.5 GB (ResNet-50, laptop CPU).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
