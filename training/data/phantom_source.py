"""Synthetic studies from the core's phantom, generated on the fly (deterministic by seed).

Study ``i`` is ``make_phantom(seed=seed * 1000 + i, ...)``; its subtypes come from :meth:`subtypes_of`:
every fourth study (i % 4 == 3) has no lesion; the lesion studies take a seed-shuffled order of the
five subtypes in turn as their main subtype (so any six consecutive studies from 0 show all five),
plus up to ``subtypes_per_study - 1`` more drawn from the seed. The phantom labels a slice from
its masks, so a subtype shows up in the labels wherever it covers enough pixels.
"""

from __future__ import annotations

import numpy as np

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.phantom import SUBTYPES, PhantomSeries, make_phantom
from training.data.base import CachedReader, SliceRecord

__all__ = ["PhantomSource"]


class PhantomSource(CachedReader):
    """``n_studies`` phantom studies of ``slices`` slices at ``size`` x ``size`` (patient = study)."""

    name = "phantom"
    hu_range = None
    classes = CLASSES  # labels all six

    def __init__(self, n_studies: int, seed: int = 0, slices: int = 24, size: int = 256,
                 subtypes_per_study: int = 2, cache_size: int = 4, name: str | None = None):
        self.name = name or type(self).name  # SliceRecord.source; a config may rename a source (train_only)
        if n_studies < 1:
            raise ValueError(f"n_studies must be at least 1, got {n_studies}")
        if not 1 <= subtypes_per_study <= len(SUBTYPES):
            raise ValueError(f"subtypes_per_study must be 1..{len(SUBTYPES)}, got {subtypes_per_study}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.n_studies, self.seed, self.slices, self.size = int(n_studies), int(seed), int(slices), int(size)
        self.subtypes_per_study, self.cache_size = int(subtypes_per_study), int(cache_size)
        order = np.random.default_rng([self.seed, 7]).permutation(len(SUBTYPES))
        self._order = tuple(SUBTYPES[k] for k in order)
        self._init_cache()

    def subtypes_of(self, study: int) -> tuple[str, ...]:
        """The hemorrhage subtypes drawn into study ``study`` (empty: a lesion-free head)."""
        if study % 4 == 3:
            return ()
        lesion_study = study - study // 4  # how many lesion studies come before this one
        main = self._order[lesion_study % len(SUBTYPES)]
        rng = np.random.default_rng([self.seed, 8, study])
        n_more = int(rng.integers(0, self.subtypes_per_study))
        others = [s for s in SUBTYPES if s != main]
        more = [others[k] for k in rng.permutation(len(others))[:n_more]]
        return tuple(s for s in SUBTYPES if s == main or s in more)

    def study_seed(self, study: int) -> int:
        return self.seed * 1000 + study

    def _load(self, study: int) -> PhantomSeries:  # memoised by CachedReader; generated arrays never pickled
        return make_phantom(seed=self.study_seed(study), subtypes=self.subtypes_of(study), n_slices=self.slices,
                            size=self.size)

    def series(self, study: int) -> PhantomSeries:
        """The generated series of study ``study`` (from the LRU cache when recent)."""
        if not 0 <= study < self.n_studies:
            raise IndexError(f"study {study} is outside 0..{self.n_studies - 1}")
        return self._cached(study)

    def records(self) -> list[SliceRecord]:
        out = []
        for study in range(self.n_studies):
            labels = self.series(study).labels
            patient = f"phantom/{self.seed}/{study}"
            for z in range(self.slices):
                out.append(SliceRecord(key=f"{patient}/{z}", patient=patient, study=patient, index=z,
                                       labels=tuple(int(v) for v in labels[z]), source=self.name,
                                       extra={"study": study, "z": z}))
        return out

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        """float32 HU [size, size] (a copy: callers may change it without touching the cache)."""
        return self.series(record.extra["study"]).hu[record.extra["z"]].copy()

    def read_mask(self, record: SliceRecord) -> dict[str, np.ndarray]:
        """{subtype: bool [size, size]} for every subtype drawn into this study (all False off its lesion)."""
        series, z = self.series(record.extra["study"]), record.extra["z"]
        return {name: series.masks[name][z].copy() if name in series.masks else np.zeros((self.size, self.size), bool)
                for name in self.subtypes_of(record.extra["study"])}
