"""Torch datasets over the prepared cache, augmentation in HU, and the epoch sampler.

Randomness is drawn from generators seeded by (seed, epoch, slice), never from global state, so an
epoch's batches are identical whatever the number of loader workers or processes, and a run resumed
from a checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ich_viewer.core.series import AIR_HU
from training.config import AugmentConfig


class CachedSlices(Dataset):
    """(HU [1, S, S] float32, labels [6] float32) for the given cache rows.

    ``neighbours`` (int [N, 2], rows of the slices below and above, -1 for none) lets augmentation thicken
    a slice into a slab; ``window_scale`` (float [N, 4]) is each row's export-window uncertainty
    (``training.data.base.export_window_scale``). Both cover every cache row, not just ``rows``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                 augment: AugmentConfig | None = None, seed: int = 0, neighbours: np.ndarray | None = None,
                 window_scale: np.ndarray | None = None):
        self.images, self.labels, self.rows = images, labels, np.asarray(rows)
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.neighbours, self.window_scale = neighbours, window_scale

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _hu(self, row: int) -> torch.Tensor:
        return torch.from_numpy(self.images[row].astype(np.float32))[None]

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        hu = self._hu(row)
        if self.augment is not None:
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, row)) & 0x7FFF_FFFF_FFFF)
            if self.augment.slab and self.neighbours is not None and (self.neighbours[row] >= 0).all():
                # a thicker reconstruction: the slice blended with both neighbours (labels stay the centre's)
                weight = _uniform(generator, 0.0, self.augment.slab)
                below, above = (self._hu(int(n)) for n in self.neighbours[row])
                hu = (1 - weight) * hu + weight / 2 * (below + above)
            if self.augment.export_window and self.window_scale is not None:
                level, width, lo, hi = (float(v) for v in self.window_scale[row])
                if hi > lo:  # saturated pixels (at or beyond the export window's ends) stay saturated
                    saturated = (hu - level).abs() >= width / 2 - 1e-3
                    hu = torch.where(saturated, hu, level + (hu - level) * _uniform(generator, lo, hi))
            hu = augment_hu(hu, self.augment, generator)
        return hu, torch.from_numpy(self.labels[row].astype(np.float32))


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=generator))


def augment_hu(hu: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Flip, small affine (air fills the borders), resolution loss, kernel blur or sharpening, HU
    contrast/offset jitter and noise: what differs between scanners, kernels and exports."""
    if cfg.flip and torch.rand((), generator=generator) < 0.5:
        hu = TF.horizontal_flip(hu)
    if cfg.degrees or cfg.translate or tuple(cfg.scale) != (1.0, 1.0):
        size = hu.shape[-1]
        shift = [round(_uniform(generator, -cfg.translate, cfg.translate) * size) for _ in range(2)]
        hu = TF.affine(hu, angle=_uniform(generator, -cfg.degrees, cfg.degrees), translate=shift,
                       scale=_uniform(generator, *cfg.scale), shear=[0.0, 0.0],
                       interpolation=InterpolationMode.BILINEAR, fill=AIR_HU)
    if tuple(cfg.resolution) != (1.0, 1.0):
        size = hu.shape[-1]
        low = max(8, round(size * _uniform(generator, *cfg.resolution)))
        if low < size:
            hu = TF.resize(TF.resize(hu, [low, low], antialias=True), [size, size], antialias=False)
    kernel = float(torch.rand((), generator=generator)) if cfg.blur or cfg.sharpen else 1.0
    if cfg.blur and kernel < 1 / 3:
        sigma = _uniform(generator, 0.1, cfg.blur)
        hu = TF.gaussian_blur(hu, [5, 5], [sigma, sigma])
    elif cfg.sharpen and kernel < 2 / 3:
        amount = _uniform(generator, 0.0, cfg.sharpen)
        hu = hu + amount * (hu - TF.gaussian_blur(hu, [5, 5], [1.0, 1.0]))
    if cfg.hu_scale:  # contrast about water (0 HU): differences between scanners' calibrations
        hu = hu * _uniform(generator, 1 - cfg.hu_scale, 1 + cfg.hu_scale)
    if cfg.hu_shift:
        hu = hu + _uniform(generator, -cfg.hu_shift, cfg.hu_shift)
    if cfg.hu_noise:
        hu = hu + cfg.hu_noise * torch.randn(hu.shape, generator=generator)
    return hu


def sample_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-slice weight (1 / frequency of its rarest positive class)^power; negatives use the
    negative frequency. power 0 = uniform, 1 = every class (and "none") drawn about equally.
    Unknown labels (-1) are neither positives nor negatives."""
    labels = np.asarray(labels)
    n = len(labels)
    positives = (labels[:, 1:] == 1).sum(0).astype(float)  # subtypes only: "any" is their union
    negatives = float((labels[:, 0] == 0).sum())
    inverse = np.where(positives > 0, n / np.maximum(positives, 1), 0.0)
    weights = np.full(n, (n / max(negatives, 1)) ** power)
    for i, row in enumerate(labels[:, 1:]):
        if (row == 1).any():
            weights[i] = inverse[row > 0].max() ** power
    return weights / weights.sum()


def shared_sample_weights(labels: np.ndarray, power: float, train_only: np.ndarray, share: float) -> np.ndarray:
    """:func:`sample_weights` computed apart for the train-only rows (``train_only`` True: synthetic phantom
    slices) and the real ones, then scaled so that the train-only rows get ``share`` of the draws. Without it a
    phantom with 147 subdural slices beside 18 real ones took 29% of the draws and taught subdural almost alone
    (real held-out subdural AUC 0.19 on one fold)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"train_only_share must be in [0, 1), not {share}")
    weights = np.zeros(len(labels))
    for rows, total in ((~train_only, 1.0 - share), (train_only, share)):
        if rows.any():
            weights[rows] = sample_weights(labels[rows], power) * total
    return weights / weights.sum()


def slice_levels(studies, indices, bands: int = 5) -> np.ndarray:
    """int [N]: each slice's band of level in its study (``studies[i]``, any hashable), 0 (its lowest slice)
    .. bands - 1 (its highest), from the slice indices."""
    ends: dict = {}
    for study, index in zip(studies, indices):
        low, high = ends.get(study, (index, index))
        ends[study] = (min(low, index), max(high, index))
    out = np.zeros(len(indices), int)
    for i, (study, index) in enumerate(zip(studies, indices)):
        low, high = ends[study]
        out[i] = min(int((index - low) / max(high - low, 1) * bands), bands - 1)
    return out


def position_matched(weights: np.ndarray, any_labels: np.ndarray, levels: np.ndarray, groups: np.ndarray,
                     match: float) -> np.ndarray:
    """``weights`` with each group's negative ("any" = 0) draws moved across slice levels toward its positives'.

    Head CT bleeds sit mostly at the level of the basal ganglia and ventricles (PHE-SICH: 72% of its positive
    slices in the middle fifth of a study, against 5% of its negatives), so a model can score a slice by its
    anatomy instead of its blood: trained without CT-ICH, 76% of the middle slices of CT-ICH's patients with no
    bleed at all scored P(any) > 0.5. With ``match`` = 1 a group's negatives are drawn over levels exactly as
    its positives are, so the level carries no information about the label; the negatives' total share and
    every weight within a (level, label) cell keep their proportions. A level with negatives but no positives
    keeps (1 - match) of its share."""
    out = np.asarray(weights, float).copy()
    for group in np.unique(groups):
        mine = groups == group
        positive, negative = mine & (any_labels == 1), mine & (any_labels == 0)
        if not positive.any() or not negative.any():
            continue
        total = out[negative].sum()
        wanted = {}
        for level in np.unique(levels[mine]):
            cell = negative & (levels == level)
            if cell.any():
                wanted[level] = (match * out[positive & (levels == level)].sum() / out[positive].sum()
                                 + (1 - match) * out[cell].sum() / total)
        scale = total / sum(wanted.values())
        for level, share in wanted.items():
            cell = negative & (levels == level)
            out[cell] *= share * scale / out[cell].sum()
    return out / out.sum()


class EpochSampler(Sampler[int]):
    """Shuffled or class-balanced draws, the same on every process, then split among processes."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None, epoch_size: int | None = None,
                 rank: int = 0, world: int = 1):
        self.n, self.seed, self.weights = n, seed, weights
        self.epoch_size = epoch_size or n
        self.rank, self.world, self.epoch = rank, world, 0
        self.per_rank = math.ceil(self.epoch_size / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        total = self.per_rank * self.world
        if self.weights is not None:
            draw = torch.multinomial(torch.as_tensor(self.weights), total, replacement=True, generator=generator)
        else:
            reps = math.ceil(total / self.n)
            draw = torch.cat([torch.randperm(self.n, generator=generator) for _ in range(reps)])[:total]
        return draw[self.rank::self.world].tolist()

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank
