"""Synthetic studies from the core's phantom, generated on the fly (deterministic by seed)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ich_viewer.core.phantom import SUBTYPES, PhantomSeries, make_phantom
from training.data.base import SliceRecord


class PhantomSource:
    """``n_studies`` phantom studies; study i has seed ``seed * 1000 + i``.

    Subtypes rotate through the five so every one appears once there are five studies; every
    fourth study has no lesion, so negatives come from lesion-free heads too.
    """

    name = "phantom"
    hu_range = None

    def __init__(self, n_studies: int, seed: int = 0, slices: int = 24, size: int = 256):
        self.n_studies, self.seed, self.slices, self.size = n_studies, seed, slices, size
        self._series = lru_cache(maxsize=4)(self._generate)

    def subtypes_of(self, study: int) -> tuple[str, ...]:
        if study % 4 == 3:
            return ()
        first = SUBTYPES[study % len(SUBTYPES)]
        second = SUBTYPES[(study * 2 + 1) % len(SUBTYPES)]
        return (first,) if study % 2 == 0 or second == first else (first, second)

    def _generate(self, study: int) -> PhantomSeries:
        return make_phantom(seed=self.seed * 1000 + study, subtypes=self.subtypes_of(study), n_slices=self.slices,
                            size=self.size)

    def records(self) -> list[SliceRecord]:
        out = []
        for study in range(self.n_studies):
            series = self._series(study)
            patient = f"phantom/{self.seed}/{study}"
            for z in range(self.slices):
                out.append(SliceRecord(f"{patient}/{z}", patient, patient, z,
                                       tuple(int(v) for v in series.labels[z]), self.name, {"study": study, "z": z}))
        return out

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        return self._series(record.extra["study"]).hu[record.extra["z"]]

    def read_mask(self, record: SliceRecord) -> dict[str, np.ndarray]:
        series = self._series(record.extra["study"])
        return {name: mask[record.extra["z"]] for name, mask in series.masks.items()}
