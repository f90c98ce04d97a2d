"""Inference speed: ONNX Runtime (FP32, INT8) against PyTorch eager on the same weights, and end to end.

    .venv/bin/python bench/bench_inference.py [--config ctich_resnet18] [--repeats 7] [--data ../shared/data/cq500-ct0]

1. Per-slice latency at batch 1 and batch 16 (512x512 HU input, the graph resizes), median of
   ``--repeats`` runs after a warm-up, for: PyTorch eager (torch.inference_mode, all threads), the
   exported ONNX in ONNX Runtime, and its INT8 static quantisation. The weights are the run's
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
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
model = IchModel(sys.argv[2])
series = ich_viewer.load(sys.argv[1]).series[0]
result = predict_series(model, series.loader(), len(series))
top = np.nanargmax(result.probabilities, axis=1)
for i, c in enumerate(top):  # every slice's CAM upsampled once, as scrolling through the study would
    cam_overlay(result.cam[i, c], (series.rows, series.columns), 1.0, 1.0, 0.0)
elapsed = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (torch-laden) parent process.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "import_s": t_import, "slices": len(series), "rss_mb": hwm / 1024}))
"""


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    import onnxruntime as ort
    import torch

    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config, model, fp32, int8, source = build(args.config, tmp)
        print(f"{config.model.arch} at {config.model.size} px ({source}); torch threads {torch.get_num_threads()}; "
              f"median of {args.repeats}\n")
        rng = np.random.default_rng(0)
        print("| engine | batch 1 (ms/slice) | batch 16 (ms/slice) | vs PyTorch eager (batch 16) |")
        print("|---|---:|---:|---:|")
        rows = {}
        for name in ("PyTorch eager", "ONNX Runtime FP32", "ONNX Runtime INT8"):
            per_batch = {}
            for batch in (1, 16):
                hu = rng.normal(30, 300, (batch, 1, 512, 512)).astype(np.float32)
                if name == "PyTorch eager":
                    tensor = torch.from_numpy(hu)

                    def fn(tensor=tensor):
                        with torch.inference_mode():
                            model(tensor)
                else:
                    session = ort.InferenceSession(str(fp32 if "FP32" in name else int8),
                                                   providers=["CPUExecutionProvider"])

                    def fn(session=session, hu=hu):
                        session.run(["probabilities", "cam"], {"hu": hu})
                per_batch[batch] = 1000 * _median_time(fn, args.repeats) / batch
            rows[name] = per_batch
            ratio = rows["PyTorch eager"][16] / per_batch[16]
            print(f"| {name} | {per_batch[1]:.1f} | {per_batch[16]:.1f} | {ratio:.2f}x |", flush=True)

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
