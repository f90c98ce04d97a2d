"""Slice ordering and spacing checks (pure numpy; no pydicom).

Order by ImagePositionPatient projected on the slice normal, the only ordering that is right for
any orientation; fall back to InstanceNumber, then to the file name. Duplicated positions, gaps and
irregular spacing are reported in :class:`Geometry`, never silently fixed or mixed.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ich_viewer.core.series import Geometry, SliceRef, project_on_normal

#: Two slices closer than this along the normal are at "the same position".
DUPLICATE_TOLERANCE_MM = 0.01
#: A step this many times the median step is a gap (missing slices).
GAP_FACTOR = 1.5
#: Steps differing from the median by more than this fraction make the spacing irregular.
IRREGULAR_FRACTION = 0.1


def natural_key(text: str) -> list:
    """Sort key that puts IM2 before IM10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def order_slices(
    slices: Sequence[SliceRef], orientation: tuple[float, ...] | None
) -> tuple[list[SliceRef], Geometry]:
    """Return the slices in order (inferior to superior along the normal) and their geometry."""
    by_name = lambda s: (natural_key(str(s.file)), s.frame or 0)  # noqa: E731
    if orientation is not None and all(s.position is not None for s in slices):
        z = {id(s): project_on_normal(s.position, orientation) for s in slices}
        ordered = sorted(slices, key=lambda s: (z[id(s)], s.instance or 0, by_name(s)))
        positions = np.array([z[id(s)] for s in ordered])
        return ordered, _spacing_report("position", positions)
    if all(s.instance is not None for s in slices):
        ordered = sorted(slices, key=lambda s: (s.instance, by_name(s)))
        return ordered, Geometry("instance", slice_spacing=None)
    return sorted(slices, key=by_name), Geometry("filename", slice_spacing=None)


def _spacing_report(ordering: str, positions: np.ndarray) -> Geometry:
    steps = np.diff(positions)
    duplicates = tuple((int(i), int(i) + 1) for i in np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM))
    real_steps = steps[steps >= DUPLICATE_TOLERANCE_MM]
    if real_steps.size == 0:
        return Geometry(ordering, slice_spacing=None, duplicates=duplicates)
    median = float(np.median(real_steps))
    gaps = tuple(int(i) for i in np.flatnonzero(steps > GAP_FACTOR * median))
    regular = real_steps[real_steps <= GAP_FACTOR * median]
    irregular = bool(np.any(np.abs(regular - median) > IRREGULAR_FRACTION * median))
    return Geometry(
        ordering, slice_spacing=median, duplicates=duplicates, gaps=gaps, irregular=irregular
    )
