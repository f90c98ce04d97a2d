"""Self-supervised pretraining of the trunk on unlabelled slices (SimCLR; issue 14's experiment).

The recipes otherwise start from random weights (no ImageNet weights can be downloaded here). This step
teaches the trunk what head CT looks like across hospitals without any label: two augmented views of each
slice (the recipe's scanner, kernel and geometry jitter, made stronger) must embed closer to each other than
to the batch's other slices (NT-Xent, Chen et al. 2020). The trunk is saved as a torchvision ResNet state
dict, ``<out>/<name>/pretrained_trunk.pth``, which a recipe then starts from with
``--set model.pretrained="<that path>"``.

The slices: every non-synthetic cache row (labels ignored), plus ``pretrain.dicom_folders``. Rows of
``split.held_out_source`` are left out, so a leave-one-hospital-out run has never seen its test hospital,
even unlabelled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset

from training.config import AugmentConfig, Config
from training.data.cache import Cache
from training.data.dataset import augment_hu
from training.model import Preprocess, input_statistics, resize_hu
from training.train import one_cycle, seed_everything

log = logging.getLogger(__name__)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each of the 2N views must pick its partner out of the other 2N - 1 by cosine similarity."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # a view is not its own partner
    n = len(z1)
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, partners)


def view_augmentation(augment: AugmentConfig) -> AugmentConfig:
    """The recipe's augmentation with SimCLR-strength geometry and HU jitter (crops and colour, for CT)."""
    return dataclasses.replace(augment, flip=True, degrees=max(augment.degrees, 20.0),
                               translate=max(augment.translate, 0.1), scale=[0.7, 1.4],
                               hu_shift=max(augment.hu_shift, 8.0), hu_scale=max(augment.hu_scale, 0.1),
                               hu_noise=max(augment.hu_noise, 5.0))


class TwoViews(Dataset):
    """Items are (draw, slice) pairs: two views of the slice, each augmented with its own generator seeded by
    (seed, draw, view), so a slice drawn twice gets new views, and the run is the same with any number of workers."""

    def __init__(self, images: np.ndarray, augment: AugmentConfig, seed: int = 0):
        self.images, self.augment, self.seed = images, augment, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]):
        draw, i = item
        hu = torch.from_numpy(self.images[i].astype(np.float32))[None]
        views = []
        for view in (0, 1):
            generator = torch.Generator().manual_seed(hash((self.seed, draw, view)) & 0x7FFF_FFFF_FFFF)
            views.append(augment_hu(hu, self.augment, generator))
        return views[0], views[1]


class Encoder(nn.Module):
    """Preprocess (the recipe's clip and windows, at the pretraining size) -> ResNet trunk -> pooled
    features -> a projection head, discarded after pretraining (SimCLR: the features before it transfer better)."""

    def __init__(self, config: Config):
        super().__init__()
        m = config.model
        if len(config.windows) != 3:
            raise ValueError("pretrain saves a torchvision ResNet, whose first convolution takes three windows; "
                             f"this recipe has {len(config.windows)}")
        self.preprocess = Preprocess(config.pretrain.size, config.windows, m.clip,
                                     *input_statistics("pretrained"))
        self.net = getattr(torchvision.models, m.arch)(weights=None)
        features = self.net.fc.in_features
        self.net.fc = nn.Identity()
        self.projection = nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, 128))

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        return self.projection(self.net(self.preprocess(hu)))

    def trunk_state(self, arch: str) -> dict:
        """The trunk as a full torchvision state dict (its ``fc`` freshly initialised; the recipe replaces it)."""
        fresh = getattr(torchvision.models, arch)(weights=None)
        state = fresh.state_dict()
        state.update({k: v for k, v in self.net.state_dict().items() if not k.startswith("fc.")})
        return state


def unlabelled_slices(config: Config) -> tuple[np.ndarray, dict[str, int]]:
    """int16 [N, S, S] HU at the cache's size: the cache's real slices outside the held-out source, and the
    DICOM folders' slices. Returns the count per source too."""
    import ich_viewer
    from ich_viewer.core.volume import read_volume

    cache = Cache.open(config.cache_dir)
    held_out = config.split.held_out_source
    keep = np.array([i for i, r in enumerate(cache.records)
                     if r.source not in config.data.train_only and r.source != held_out], int)
    counts: dict[str, int] = {}
    for i in keep:
        counts[cache.records[i].source] = counts.get(cache.records[i].source, 0) + 1
    arrays = [np.asarray(cache.images[keep])]
    size = cache.images.shape[-1]
    folders = config.pretrain.dicom_folders
    if not isinstance(folders, list):  # a string would be read one character at a time
        raise ValueError(f"pretrain.dicom_folders must be a list of folders, not {folders!r}")
    for folder in folders:
        loaded = ich_viewer.load(Path(folder))
        slices = [read_volume(series) for series in loaded.series]
        if not slices:
            raise ValueError(f"pretrain.dicom_folders: no readable DICOM series in {folder}")
        hu = torch.from_numpy(np.concatenate([s.astype(np.float32) for s in slices]))[:, None]
        arrays.append(resize_hu(hu, size)[:, 0].round().clamp(-32768, 32767).to(torch.int16).numpy())
        counts[Path(folder).name] = len(arrays[-1])
    return np.concatenate(arrays), counts


def pretrain(config: Config, progress: bool = True) -> Path:
    """SimCLR on :func:`unlabelled_slices`; writes ``pretrained_trunk.pth`` and ``pretrain.jsonl`` in the run folder."""
    p = config.pretrain
    seed_everything(config.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    images, counts = unlabelled_slices(config)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = TwoViews(images, view_augmentation(config.augment), config.seed)
    draws = np.random.default_rng(config.seed).integers(0, len(images), p.steps * p.batch_size)
    sampler = list(enumerate(draws.tolist()))  # (draw, slice): a DataLoader sampler is any iterable of items
    loader = DataLoader(dataset, batch_size=p.batch_size, sampler=sampler, drop_last=True,
                        num_workers=config.train.loader_workers)
    encoder = Encoder(config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=p.lr, weight_decay=config.train.weight_decay)
    scheduler = one_cycle(optimizer, p.lr, p.steps, config.train.warmup)
    log.info("pretrain: %s slices (%s), %d steps of %d pairs", len(images), counts, p.steps, p.batch_size)
    encoder.train()
    t0, losses = time.perf_counter(), []
    with open(run_dir / "pretrain.jsonl", "w") as f:
        for step, (a, b) in enumerate(loader, 1):
            both = torch.cat([a, b]).contiguous(memory_format=torch.channels_last)
            z = encoder(both)
            loss = nt_xent(z[:len(a)], z[len(a):], p.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if step % 10 == 0 or step == p.steps:
                entry = {"step": step, "loss": round(float(np.mean(losses[-10:])), 4),
                         "seconds": round(time.perf_counter() - t0, 1)}
                f.write(json.dumps(entry) + "\n")
                f.flush()
                if progress:
                    log.info("%s", json.dumps(entry))
    path = run_dir / "pretrained_trunk.pth"
    torch.save(encoder.trunk_state(config.model.arch), path)
    (run_dir / "pretrain_sources.json").write_text(json.dumps(counts, indent=1))
    return path
