"""Training throughput (images/s) on this machine, and the prepared-cache loader alone.

    .venv/bin/python bench/bench_train.py [--archs resnet18,resnet50] [--size 224] [--steps 6] [--batch 16]

Per architecture: full training steps (forward, weighted BCE, backward, AdamW) in float32 and under
bf16 autocast, measured in the same run (median of steps after 2 warm-up steps). The loader row
reads a synthetic int16 cache through the real Dataset + augmentation + DataLoader. On a GPU the
same script uses CUDA. The seed's anchor: 10 epochs of 752k images in 48 h on a P100 = 43 images/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from training.config import AugmentConfig, from_dict
from training.data.dataset import CachedSlices, EpochSampler
from training.model import build_model
from training.train import WeightedBCE


def step_rate(arch: str, size: int, batch: int, steps: int, amp: str, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build_model(from_dict({"model": {"arch": arch, "size": size}})).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    loss_fn = WeightedBCE([2, 1, 1, 1, 1, 1]).to(device)
    hu = (torch.randn(batch, 1, size, size) * 50 + 30).to(device).contiguous(memory_format=torch.channels_last)
    labels = (torch.rand(batch, 6) < 0.2).float().to(device)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = loss_fn(model(hu), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def loader_rate(size: int, batch: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        images = np.lib.format.open_memmap(f"{tmp}/images.npy", "w+", np.int16, (512, size, size))
        images[:] = np.random.default_rng(0).integers(-1024, 1500, images.shape, dtype=np.int16)
        images.flush()
        labels = np.zeros((512, 6), np.int8)
        dataset = CachedSlices(np.load(f"{tmp}/images.npy", mmap_mode="r"), labels, np.arange(512),
                               AugmentConfig(hu_noise=3.0, hu_shift=4.0, hu_scale=0.05), seed=0)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=EpochSampler(512, 0),
                                             num_workers=workers)
        t0 = time.perf_counter()
        n = sum(len(x) for x, _ in loader)
        return n / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet18,resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the loader row")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}, torch {torch.__version__}, {args.size}x{args.size}, batch {args.batch}, "
          f"median of {args.steps} steps\n")
    print("| model | float32 images/s | bf16 autocast images/s | bf16 / fp32 |")
    print("|---|---:|---:|---:|")
    for arch in args.archs.split(","):
        fp32 = step_rate(arch, args.size, args.batch, args.steps, "none", device)
        bf16 = step_rate(arch, args.size, args.batch, args.steps, "bf16", device)
        print(f"| {arch} | {fp32:.1f} | {bf16:.1f} | {bf16 / fp32:.2f}x |", flush=True)
    rate = loader_rate(args.size, args.batch, args.workers)
    print(f"\nprepared-cache loader alone (int16 memmap + augmentation, {args.workers} workers): {rate:.0f} images/s")
    print("seed anchor: ResNet-50, 10 epochs x 752k images in 48 h on a P100 = 43 images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
