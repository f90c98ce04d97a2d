"""One interface for every data source: slice records with patient/study and labels, and HU pixels.

A reader (RSNA, CT-ICH, phantom) lists :class:`SliceRecord` s and returns each slice as float32 HU
[H, W] in the orientation DICOM slices are displayed in (rows = anterior->posterior, columns =
patient right->left, i.e. radiological convention). Everything downstream (cache, splits, training)
sees only this interface.

Partial labels: a reader declares the classes it labels (:attr:`Source.classes`); every other class is
unknown, stored as ``UNKNOWN`` (-1) in that slot of the record's labels and of the cache's int8 label
array. -1 already meant "unlabelled row", so one array still carries everything (no side mask to keep
in step through caching, indexing and splitting) and ``labels >= 0`` is the mask wherever it is needed:
the loss skips unknown entries and every metric drops them per class.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from ich_viewer.core.contract import CLASSES

__all__ = ["UNKNOWN", "CachedReader", "SliceRecord", "Source", "labels_array", "partial_labels"]

#: The label value of a class a source does not label: neither positive nor negative.
UNKNOWN = -1


@dataclass(frozen=True)
class SliceRecord:
    key: str  # unique across all sources, e.g. "rsna/ID_0a1b2c" or "ctich/49/12"
    patient: str  # the unit of splitting: never on both sides of a split
    study: str  # the unit of study-level metrics (max over its slices)
    index: int  # slice position inside its study, for ordering and study plots
    labels: tuple[int, ...] | None  # 6 values in CLASSES order (1, 0 or UNKNOWN), or None when unlabelled
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)  # reader-specific (paths, frame)


class Source(Protocol):
    """What every reader provides."""

    name: str
    #: HU range that the stored pixels actually cover (CT-ICH PNGs: -20..100), or None for full DICOM.
    hu_range: tuple[float, float] | None
    #: The classes its labels state (CLASSES order); the others are UNKNOWN in every record.
    classes: tuple[str, ...]
    #: Optional: (level, width it was read with, lowest, highest HU scale about the level) that an
    #: unrecorded export window allows; readers without it are exact (:func:`export_window_scale`).


    def records(self) -> list[SliceRecord]: ...

    def read_hu(self, record: SliceRecord) -> np.ndarray: ...


def export_window_scale(source) -> tuple[float, float, float, float]:
    """A reader's (level, width read, lowest, highest) HU-scale uncertainty; (0, 0, 1, 1) when its HU are exact."""
    return tuple(getattr(source, "export_window_scale", (0.0, 0.0, 1.0, 1.0)))


def partial_labels(known: dict[str, int]) -> tuple[int, ...]:
    """Six labels in CLASSES order from ``{class: 0 or 1}``; classes not given are UNKNOWN."""
    unexpected = set(known) - set(CLASSES)
    if unexpected:
        raise ValueError(f"unknown class(es) {', '.join(sorted(unexpected))}: expected some of {', '.join(CLASSES)}")
    return tuple(int(known[c]) if c in known else UNKNOWN for c in CLASSES)


def labels_array(records: Sequence[SliceRecord]) -> np.ndarray:
    """int8 [N, 6] labels: 1, 0, or UNKNOWN (-1) for a class the source does not label and for unlabelled rows."""
    out = np.full((len(records), len(CLASSES)), UNKNOWN, np.int8)
    for i, record in enumerate(records):
        if record.labels is not None:
            out[i] = record.labels
    return out


class CachedReader:
    """A reader whose ``_load(key)`` is memoised per instance (``cache_size`` entries) and whose cache is
    dropped when pickled (it holds arrays or open files) and rebuilt on the other side, e.g. in the
    prepare step's worker processes."""

    cache_size: int = 4

    def _load(self, key):
        raise NotImplementedError

    def _init_cache(self) -> None:
        self._cached = functools.lru_cache(maxsize=self.cache_size)(self._load)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_cached", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_cache()
