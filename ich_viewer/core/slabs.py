"""Thin series fed as thick slabs: which thin slices make up the slab around each slice, and with what weight.

A model trained on 5 mm slices (CT-ICH, PHE-SICH) learned blood as it looks averaged over 5 mm. A 0.625 mm
series is noisier and shows partial volumes it never saw, so each thin slice is fed as the 5 mm slab
centred on it: the standard thick-slab reconstruction, the mean of the thin slices the slab covers. The
result is stored for the thin slice, which is also what the view shows.

Each slice stands for the stretch of the normal nearest to it (half-way to its neighbours, at most half the
median step either side, so a gap is not filled in and slices at one position share it); its weight is how
much of that stretch the slab covers. With regular spacing that is a trapezoid: 1 for slices wholly inside,
a fraction at the two edges (5 mm of 0.625 mm slices: seven whole and two halves, 8 slices' worth). At the
series' ends the slab is cut short and the weights renormalised. Pure numpy; knows nothing of DICOM or Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Slabs only for a series clearly thinner than the model's slices: closer than this, averaging a slice
#: with parts of its neighbours would only blur it.
THINNER_THAN = 0.75


@dataclass(frozen=True, eq=False)
class SlabPlan:
    thickness_mm: float  # the model's slice thickness (its card's slice_thickness_mm)
    spacing_mm: float  # the series' median step between slice centres
    #: Per slice: the indices of the slices in its slab (itself included, ascending) and their weights (sum 1).
    neighbours: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.neighbours)

    @property
    def slices_per_slab(self) -> float:
        return self.thickness_mm / self.spacing_mm

    def describe(self) -> str:
        return f"fed as {self.thickness_mm:g} mm slabs ({self.slices_per_slab:.3g} slices of {self.spacing_mm:.3g} mm)"

    def as_dict(self) -> dict:
        return {"thickness_mm": self.thickness_mm, "spacing_mm": round(self.spacing_mm, 4),
                "slices_per_slab": round(self.slices_per_slab, 2), "description": self.describe()}

    def needed(self, centres) -> np.ndarray:
        """Every slice the slabs of ``centres`` read (ascending): what must be decoded first."""
        return np.unique(np.concatenate([self.neighbours[int(i)] for i in centres]))

    def average(self, centres, available: np.ndarray, hu: np.ndarray) -> np.ndarray:
        """The slabs [len(centres), H, W] centred on ``centres``, from the decoded slices ``available``
        (ascending indices) whose HU is ``hu`` [len(available), H, W]. A neighbour missing from ``available``
        (it could not be decoded) is left out and the others' weights renormalised; each centre must be there."""
        available = np.asarray(available, int)
        mix = np.zeros((len(centres), len(available)), np.float64)
        for row, i in enumerate(centres):
            idx, w = self.neighbours[int(i)], self.weights[int(i)]
            present = np.isin(idx, available)
            w = w[present]
            mix[row, np.searchsorted(available, idx[present])] = w / w.sum() if w.sum() > 0 else 1.0 / len(w)
        # In float64, cast once: summed in float32 the slab is off in its last bits, and the INT8 model's input
        # quantisation can turn that into 1e-4 in a probability (the same slab must give the same answer).
        return np.tensordot(mix, np.asarray(hu, np.float64), axes=1).astype(np.float32)


def plan_slabs(z, spacing: float | None, thickness_mm: float | None) -> SlabPlan | None:
    """The slab of ``thickness_mm`` around each slice at positions ``z`` (mm along the normal, ascending), or
    None when slabs do not apply: thickness or spacing unknown, a single slice, or not clearly thinner."""
    z = np.asarray(z, np.float64)
    if (thickness_mm is None or not spacing or not spacing > 0 or len(z) < 2 or np.any(np.diff(z) < 0)
            or spacing >= THINNER_THAN * thickness_mm):
        return None
    half, mids = spacing / 2, (z[1:] + z[:-1]) / 2
    low = np.maximum(np.concatenate([[-np.inf], mids]), z - half)  # each slice's stretch of the normal
    high = np.minimum(np.concatenate([mids, [np.inf]]), z + half)
    neighbours, weights = [], []
    for i, centre in enumerate(z):
        a, b = centre - thickness_mm / 2, centre + thickness_mm / 2
        near = np.arange(np.searchsorted(z, a - half, "left"), np.searchsorted(z, b + half, "right"))
        overlap = np.clip(np.minimum(high[near], b) - np.maximum(low[near], a), 0.0, None)
        keep = (overlap > 1e-6 * spacing) | (near == i)  # the centre always (weight 0 only at a 3-fold duplicate)
        neighbours.append(near[keep])
        weights.append(overlap[keep] / overlap[keep].sum())
    return SlabPlan(float(thickness_mm), float(spacing), tuple(neighbours), tuple(weights))


def plan_for_series(series, thickness_mm: float | None) -> SlabPlan | None:
    """:func:`plan_slabs` for a :class:`~ich_viewer.core.series.Series`: only when it was ordered by position
    (its positions along the normal are real; ordered by instance number or file name they are made up)."""
    if series.geometry.ordering != "position":
        return None
    return plan_slabs(series.z, series.geometry.slice_spacing, thickness_mm)
