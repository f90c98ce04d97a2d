"""The training loop: AdamW + one-cycle, weighted BCE, AMP, accumulation, DDP, exact resume.

``train_one_epoch`` is one pass over the training split; ``train`` sets up, resumes, and per epoch
trains, validates, logs and checkpoints (the shape of torchvision's classification reference).

Run as ``python -m training train --config X`` on one process, or under
``torchrun --nproc_per_node K -m training train --config X`` for DistributedDataParallel (NCCL on
GPUs, gloo on CPU). Rank 0 validates, logs ``metrics.jsonl`` and writes ``checkpoint.pt``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.config import Config
from training.data.cache import Cache
from training.data.dataset import (CachedSlices, EpochSampler, position_matched, sample_weights,
                                   shared_sample_weights, slice_levels)
from training.model import build_model
from training.splits import train_val_indices

log = logging.getLogger(__name__)


def split_rows(cache: Cache, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Labelled cache rows of the training and validation patients.

    Three splits: one patient-level fold validates (``split.fold``); none does (``fold = -1``: every
    patient trains, for the bundled model); or one whole source does (``split.held_out_source``: leave
    one hospital out). Train-only sources never validate, and their rows of a validating patient
    (synthetic lesions painted on that patient's slices) are dropped: no validation anatomy reaches training.
    """
    labelled = np.flatnonzero((cache.labels >= 0).any(1))
    extra = np.array([i for i in labelled if cache.records[i].source in config.data.train_only], int)
    split = np.array([i for i in labelled if cache.records[i].source not in config.data.train_only], int)
    held_out = config.split.held_out_source
    if held_out:
        sources = np.array([cache.records[i].source for i in split])
        if held_out not in set(sources):
            raise ValueError(f"split.held_out_source {held_out!r} is none of this cache's validating sources "
                             f"({', '.join(sorted(set(sources)))})")
        train, val = np.flatnonzero(sources != held_out), np.flatnonzero(sources == held_out)
    elif config.split.fold == -1:
        train, val = np.arange(len(split)), np.array([], int)
    else:
        patients = [cache.records[i].patient for i in split]
        train, val = train_val_indices(patients, cache.labels[split, 0], config.split.folds, config.split.fold,
                                       config.split.seed)
    validating = {cache.records[i].patient for i in split[val]}
    extra = np.array([i for i in extra if cache.records[i].patient not in validating], int)
    return np.sort(np.concatenate([split[train], extra])).astype(int), split[val].astype(int)


class WeightedBCE(nn.Module):
    """Binary cross-entropy per class, weighted per class (the seed: 2 on epidural; RSNA: 2 on any).

    Targets below 0 are unknown (a class the slice's source does not label): they add nothing, and the
    result is the weighted mean over the known entries only, so a batch column that is all unknown
    neither counts nor dilutes the others. With every target known it is the plain weighted mean, as
    computed before partial labels (the same operations: the mask multiplies by exactly 1).
    """

    def __init__(self, class_weights, pos_weight=None):
        super().__init__()
        self.register_buffer("weights", torch.tensor(class_weights, dtype=torch.float32))
        self.register_buffer("pos_weight", None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known = (targets >= 0).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.clamp(min=0),
                                                              pos_weight=self.pos_weight, reduction="none")
        weights = self.weights * known  # [N, C]: each known entry's weight, 0 where unknown
        # An all-unknown batch: 0 (with a zero gradient) rather than 0/0.
        return (loss * weights).sum(1).mean() / weights.sum(1).mean().clamp(min=torch.finfo(torch.float32).tiny)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def code_version() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _autocast(config: Config, device: torch.device):
    if config.train.amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[config.train.amp]
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, rows: np.ndarray, batch_size: int = 64,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Probabilities [len(rows), 6] for cache rows (eval mode, no augmentation)."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = np.sort(rows[start:start + batch_size])  # sorted reads from the memmap; order restored below
        order = np.argsort(np.argsort(rows[start:start + batch_size]))
        hu = torch.from_numpy(images[chunk].astype(np.float32))[:, None].to(device)
        out.append(torch.sigmoid(model(hu)).float().cpu().numpy()[order])
    return np.concatenate(out) if out else np.zeros((0, 6), np.float32)


def train_one_epoch(net: nn.Module, criterion: nn.Module, optimizer, scheduler, scaler, loader: DataLoader,
                    device: torch.device, epoch: int, config: Config, *, step: int, total_steps: int,
                    show_progress: bool) -> tuple[int, list[float]]:
    """One pass over ``loader`` (the shape of torchvision's reference ``train_one_epoch``): an optimiser
    step every ``train.accumulate`` batches, gradients synchronised across DDP processes only on that
    last batch. Stops early at ``train.max_steps``. Returns the optimiser steps so far and every batch's loss."""
    accumulate, max_steps = config.train.accumulate, config.train.max_steps
    net.train()
    losses = []
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.train.epochs}", disable=not show_progress, unit="batch",
               leave=False)
    optimizer.zero_grad(set_to_none=True)
    for i, (hu, labels) in enumerate(bar):
        hu, labels = hu.to(device), labels.to(device)
        if config.train.channels_last:
            hu = hu.contiguous(memory_format=torch.channels_last)
        last_micro = (i + 1) % accumulate == 0
        distributed = isinstance(net, DistributedDataParallel)
        sync = net.no_sync() if distributed and not last_micro else contextlib.nullcontext()
        with sync, _autocast(config, device):
            loss = criterion(net(hu), labels) / accumulate
        scaler.scale(loss).backward()
        losses.append(float(loss.detach()) * accumulate)
        if last_micro:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if step < total_steps:
                scheduler.step()
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if max_steps is not None and step >= max_steps:
                break
    return step, losses


def train(config: Config, *, resume: bool = True, progress: bool = True, stop_after: int | None = None) -> Path:
    """Train (or continue) the run in ``config.run_dir``; returns the checkpoint path.

    ``stop_after`` ends this call after that many epochs (an interruption, for tests of resume)."""
    rank, world = _distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if config.train.threads and device.type == "cpu":
        torch.set_num_threads(config.train.threads)
    seed_everything(config.seed)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / "checkpoint.pt"

    cache = Cache.open(config.cache_dir)
    train_rows, val_rows = split_rows(cache, config)
    sampler, dataset, loader = _training_data(cache, train_rows, config, rank, world)
    model = build_model(config).to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = max(1, len(loader) // config.train.accumulate)
    total_steps = steps_per_epoch * config.train.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    scheduler = one_cycle(optimizer, config.train.lr, total_steps, config.train.warmup)
    scaler = torch.amp.GradScaler(device.type, enabled=config.train.amp == "fp16")
    criterion = WeightedBCE(config.train.class_weights, config.train.pos_weight).to(device)
    start_epoch, step, elapsed = 0, 0, 0.0
    if resume and checkpoint_path.is_file():
        start_epoch, step, elapsed = _restore(checkpoint_path, config, device, model, optimizer, scheduler, scaler)
    elif rank == 0:  # a fresh start: the earlier run's epochs must not stay in this run's log (1, 2, 1, 2)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    net = DistributedDataParallel(model) if world > 1 else model

    max_steps = config.train.max_steps
    last_epoch = config.train.epochs if stop_after is None else min(config.train.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, last_epoch):
        if max_steps is not None and step >= max_steps:
            break
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        step, losses = train_one_epoch(net, criterion, optimizer, scheduler, scaler, loader, device, epoch, config,
                                       step=step, total_steps=total_steps, show_progress=progress and rank == 0)
        elapsed += time.perf_counter() - t0
        if rank == 0:
            seconds = time.perf_counter() - t0
            entry = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else None,
                     "lr": scheduler.get_last_lr()[0], "seconds": round(seconds, 2),
                     "images_per_s": round(len(losses) * config.train.batch_size * world / max(seconds, 1e-9), 2)}
            if config.train.validate_each_epoch or epoch + 1 == config.train.epochs:
                entry.update(validate(model, cache, val_rows, device))
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
            if progress:
                log.info("%s", json.dumps({k: v for k, v in entry.items() if not isinstance(v, dict)}))
            done = epoch + 1 == config.train.epochs or step >= (max_steps or float("inf"))
            if (epoch + 1) % config.train.checkpoint_every == 0 or done or epoch + 1 == last_epoch:
                _save(checkpoint_path, model, optimizer, scheduler, scaler, config, epoch + 1, step, elapsed, world)
        if world > 1:
            dist.barrier()
    if world > 1:
        dist.destroy_process_group()
    return checkpoint_path


def _training_data(cache: Cache, train_rows: np.ndarray, config: Config, rank: int,
                   world: int) -> tuple[EpochSampler, CachedSlices, DataLoader]:
    """The training split's sampler (this process's share of each epoch), augmenting dataset and loader."""
    train_only = np.array([cache.records[i].source in config.data.train_only for i in train_rows], bool)
    if config.data.train_only_share >= 0 and train_only.any():
        weights = shared_sample_weights(cache.labels[train_rows], config.train.balanced_sampling, train_only,
                                        config.data.train_only_share)
    else:
        weights = sample_weights(cache.labels[train_rows], config.train.balanced_sampling) \
            if config.train.balanced_sampling else None
    if config.train.position_match:
        records = [cache.records[i] for i in train_rows]
        weights = position_matched(np.full(len(train_rows), 1.0) if weights is None else weights,
                                   cache.labels[train_rows, 0],
                                   slice_levels([(r.source, r.study) for r in records], [r.index for r in records]),
                                   np.array([r.source for r in records]), config.train.position_match)
    sampler = EpochSampler(len(train_rows), config.seed, weights, config.train.epoch_size, rank, world)
    dataset = CachedSlices(cache.images, cache.labels, train_rows, config.augment, config.seed,
                           neighbours=slice_neighbours(cache.records), window_scale=export_window_scales(cache, config))
    loader = DataLoader(dataset, batch_size=config.train.batch_size, sampler=sampler, drop_last=True,
                        num_workers=config.train.loader_workers, persistent_workers=config.train.loader_workers > 0)
    return sampler, dataset, loader


def slice_neighbours(records) -> np.ndarray:
    """int [N, 2]: the rows of the slices just below and above each one in its study (-1 at an end or a gap)."""
    out = np.full((len(records), 2), -1, int)
    by_position = {(r.source, r.study, r.index): i for i, r in enumerate(records)}
    for i, r in enumerate(records):
        out[i] = [by_position.get((r.source, r.study, r.index + step), -1) for step in (-1, 1)]
    return out


def export_window_scales(cache: Cache, config: Config) -> np.ndarray:
    """float32 [N, 4]: per row, its source's export-window uncertainty (``augment.export_window``)."""
    from training.data.base import export_window_scale
    from training.data.sources import build_source

    by_name = {}
    if config.augment.export_window:
        for spec in config.data.sources:
            reader = build_source(spec)
            by_name[reader.name] = export_window_scale(reader)
    exact = (0.0, 0.0, 1.0, 1.0)
    return np.array([by_name.get(r.source, exact) for r in cache.records], np.float32).reshape(-1, 4)


def _restore(path: Path, config: Config, device: torch.device, model, optimizer, scheduler,
             scaler) -> tuple[int, int, float]:
    """Load a checkpoint of this same config, random states included (an exact resume); returns the
    epochs done, the optimiser steps done and the training seconds so far."""
    state = torch.load(path, map_location=device, weights_only=False)
    if state["config"] != config.to_dict():
        raise ValueError(f"{path} was trained with another config; use a new run name or --no-resume")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state["epoch"], state["step"], state["elapsed"]


def validate(model: nn.Module, cache: Cache, rows: np.ndarray, device) -> dict:
    from training.metrics import per_class_auc, weighted_log_loss

    if len(rows) == 0:
        return {}
    probs = predict(model, cache.images, rows, device=device)
    labels = cache.labels[rows]
    return {"val_log_loss": weighted_log_loss(labels, probs),
            "val_auc": per_class_auc(labels, probs, cache.meta["classes"])}


def one_cycle(optimizer, lr: float, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """OneCycleLR, safe for short runs: a warmup of exactly one step (e.g. 10 steps at 0.1) divides by zero
    inside PyTorch, so a warmup of one step or less becomes none (half a step: the schedule starts annealing
    near ``lr``; a one-step run gets the schedule's final rate, as any one-step OneCycle does)."""
    pct_start = warmup if warmup * total_steps > 1 else 0.5 / total_steps
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start)


def _save(path: Path, model, optimizer, scheduler, scaler, config: Config, epoch: int, step: int, elapsed: float,
          world: int) -> None:
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "elapsed": elapsed, "config": config.to_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "world_size": world, "code_version": code_version(), "torch": torch.__version__,
        "hardware": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU x{os.cpu_count()}",
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never a half-written checkpoint
