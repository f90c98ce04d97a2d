"""Synthetic blood on real anatomy: the phantom's lesion painters applied to negative slices of a real
hospital (CT-ICH by default, or PHE-SICH: ``host = "phe_sich"``).

For each negative host slice, :func:`real_slice_geometry` segments what the painters need (the
inner table from saturated bone, intracranial space, ventricles and sulcal CSF from their HU) and
builds a :class:`~ich_viewer.core.lesions.SliceGeometry`; :func:`plan_real_lesion` places one
lesion of the requested subtype where that subtype lies; ``paste_lesions`` paints it with CT-like
noise. Labels are the painted masks, so "positive" means "blood is visible on this slice".

Records keep the host's patient id, so the training split drops every synthetic slice whose host
patient validates (no validation anatomy leaks into training through them); the source is meant
to be ``train_only``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.lesions import LesionSpec, SliceGeometry, ct_noise, fast_atan2, paste_lesions
from ich_viewer.core.phantom import SUBTYPES, min_lesion_pixels
from training.data.base import UNKNOWN, CachedReader, SliceRecord
from training.data.ctich import CtichPngSource
from training.data.phe_sich import PheSichSource

__all__ = ["RealLesionSource", "plan_real_lesion", "real_slice_geometry"]

#: CT-ICH PNGs clip at 100 HU, so bone is the saturated top of the range.
BONE_HU = 99.0
#: Intracranial cross-sections smaller than this (skull base, vertex) are not used as hosts.
MIN_INTRACRANIAL_MM2 = 6000.0
#: The PNG export stores no spacing; its 256-pixel slices are the scans' ~230 mm field of view.
CTICH_FIELD_OF_VIEW_MM = 230.0
#: Readers whose negative slices can host a lesion: both PNG exports keep -20..100 HU, so bone saturates.
HOSTS = {"ctich_png": CtichPngSource, "phe_sich": PheSichSource}


def real_slice_geometry(hu: np.ndarray, pixel_spacing: float | None = None) -> SliceGeometry | None:
    """The painters' geometry of one real axial slice in display orientation, or None when the skull
    does not enclose a large enough intracranial space (skull base, vertex, open skull)."""
    px = float(pixel_spacing or CTICH_FIELD_OF_VIEW_MM / hu.shape[1])
    bone = ndi.binary_closing(hu >= BONE_HU, iterations=2)  # bridge sutures and thin temporal bone
    inside = ndi.binary_fill_holes(bone) & ~bone & (hu > -15)
    labels, n = ndi.label(inside)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.max() * px * px < MIN_INTRACRANIAL_MM2:
        return None
    inside = labels == 1 + int(sizes.argmax())
    depth = np.where(inside, ndi.distance_transform_edt(inside), -ndi.distance_transform_edt(~inside))
    depth = (depth * px).astype(np.float32)
    rows, cols = np.indices(hu.shape, dtype=np.float32)
    cy, cx = ndi.center_of_mass(inside)
    u, v = (cols - np.float32(cx)) * np.float32(px), (rows - np.float32(cy)) * np.float32(px)
    fluid = inside & (hu < 15) & (depth > 1.5)
    ventricles = np.zeros_like(fluid)
    parts, n_parts = ndi.label(fluid)
    if n_parts:  # ventricles: sizeable fluid pools deep in the middle of the brain
        index = np.arange(1, n_parts + 1)
        area = ndi.sum_labels(np.ones_like(hu), parts, index) * px * px
        deep = ndi.maximum(depth, parts, index)
        centres = np.array(ndi.center_of_mass(fluid, parts, index)).reshape(-1, 2)
        off = np.hypot((centres[:, 0] - cy) * px, (centres[:, 1] - cx) * px)
        keep = index[(area > 40) & (deep > 20) & (off < 35)]
        ventricles = np.isin(parts, keep)
    return SliceGeometry(theta=fast_atan2(u, -v), depth=depth, u=u, v=v, y=rows * np.float32(px),
                         brain=inside & (hu >= 15) & (hu < 50), csf=fluid & ~ventricles, ventricles=ventricles,
                         pixel_spacing=px)


def plan_real_lesion(subtype: str, rng: np.random.Generator, geom: SliceGeometry) -> LesionSpec | None:
    """One lesion of ``subtype`` on the slice (z = 0), sized by a random height inside its extent;
    None when the slice has no place for it (no ventricles, no deep parenchyma)."""
    z_center = float(rng.uniform(-0.6, 0.6))  # zfrac of the slice: how far from the largest cross-section
    side, deg, hu = float(rng.choice([-1.0, 1.0])), math.radians, float(rng.uniform(60, 80))
    if subtype == "epidural":
        return LesionSpec(subtype, z_center, 1.0, hu, side * deg(rng.uniform(25, 155)), deg(rng.uniform(14, 28)),
                          rng.uniform(9, 18))
    if subtype == "subdural":
        return LesionSpec(subtype, z_center, 1.0, hu, side * deg(rng.uniform(60, 120)), deg(rng.uniform(40, 70)),
                          rng.uniform(4, 10))
    if subtype == "intraparenchymal":
        radius = float(rng.uniform(6, 14))
        candidates = np.flatnonzero((geom.depth > radius + 8).ravel() & geom.brain.ravel())
        if not len(candidates):
            return None
        k = int(rng.choice(candidates))
        shape = tuple(float(x) for _ in range(3) for x in (rng.uniform(0.05, 0.16), rng.uniform(0, 2 * math.pi)))
        return LesionSpec(subtype, z_center, 1.0, hu, center=(float(geom.u.flat[k]), float(geom.v.flat[k])),
                          radius=radius, shape=shape, edema=rng.uniform(2, 5))
    if subtype == "intraventricular":
        if geom.ventricles.sum() * geom.pixel_spacing**2 < 60:
            return None
        y = geom.y[geom.ventricles]  # a level that leaves blood in the dependent part of the ventricles
        return LesionSpec(subtype, 0.0, 1.0, hu, level=float(np.percentile(y, rng.uniform(35, 75))))
    if subtype == "subarachnoid":
        return LesionSpec(subtype, z_center, 1.0, hu - 4, side * deg(rng.uniform(30, 150)), deg(rng.uniform(25, 45)),
                          region="convexity")
    raise ValueError(f"unknown subtype {subtype!r}; valid: {', '.join(SUBTYPES)}")


class RealLesionSource(CachedReader):
    """Negative slices of a host hospital's PNG export, each with one synthetic lesion of ``subtypes`` (in turn).

    A host slice is negative when its "any" label is 0; PHE-SICH leaves four subtypes unknown, but a slice
    without blood has none of them, so a painted slice's six labels are all known.

    Deterministic by ``seed``: host ``k`` gets the k-th subtype of the rotation and its own random
    stream. Hosts whose anatomy has no place for that subtype, or whose painted lesion covers fewer
    pixels than the phantom's positivity threshold, are left out.
    """

    name = "ctich_lesions"
    classes = CLASSES  # labels all six

    def __init__(self, root: str, subtypes: Sequence[str] = ("intraventricular", "subarachnoid", "subdural"),
                 seed: int = 0, every: int = 1, name: str | None = None, cache_size: int = 8,
                 host: str = "ctich_png", subtype_labels: bool = True):
        self.name = name or type(self).name
        # False: a painted slice says only "blood here" (any = 1) and leaves its subtype unknown, so the
        # painters' shapes teach detection without teaching the subtype heads what each subtype looks like
        self.subtype_labels = bool(subtype_labels)
        unknown = sorted(set(subtypes) - set(SUBTYPES))
        if unknown or not subtypes:
            raise ValueError(f"subtypes must be a non-empty subset of {', '.join(SUBTYPES)}; got {list(subtypes)}")
        if host not in HOSTS:
            raise ValueError(f"host must be one of {', '.join(HOSTS)}; got {host!r}")
        self.host = HOSTS[host](root)
        self.hu_range = self.host.hu_range
        # the painted slice keeps its host's export: PHE-SICH's window uncertainty applies to it as well
        self.export_window_scale = getattr(self.host, "export_window_scale", (0.0, 0.0, 1.0, 1.0))
        self.subtypes, self.seed, self.every, self.cache_size = tuple(subtypes), int(seed), int(every), cache_size
        negatives = [r for r in self.host.records() if r.labels is not None and r.labels[0] == 0]
        # Host k (its place among the kept negatives) takes subtype k of the rotation and random stream k.
        self._by_key = {r.key: SliceRecord(r.key, r.patient, r.study, r.index, r.labels, r.source,
                                           {**r.extra, "host_number": k})
                        for k, r in enumerate(negatives[::self.every])}
        self._init_cache()

    def _load(self, host_key: str) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        record = self._by_key[host_key]
        hu = self.host.read_hu(record)
        geom = real_slice_geometry(hu)
        if geom is None:
            return None
        k = record.extra["host_number"]
        rng = np.random.default_rng([self.seed, k])
        lesion = plan_real_lesion(self.subtypes[k % len(self.subtypes)], rng, geom)
        if lesion is None:
            return None
        masks = paste_lesions(hu, geom, [lesion], 0.0, ct_noise(rng, hu.shape),
                              min_pixels=min_lesion_pixels(geom.pixel_spacing))
        return (hu, masks) if masks else None

    def records(self) -> list[SliceRecord]:
        out = []
        for key, host in self._by_key.items():
            painted = self._cached(key)
            if painted is None:
                continue
            labels = tuple(int(c == "any" or c in painted[1]) if self.subtype_labels or c == "any" else UNKNOWN
                           for c in CLASSES)
            out.append(SliceRecord(key=f"{self.name}/{key.split('/', 1)[1]}", patient=host.patient,
                                   study=f"{host.study}/{self.name}", index=host.index, labels=labels,
                                   source=self.name, extra={"host": key}))
        return out

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        painted = self._cached(record.extra["host"])
        if painted is None:
            raise ValueError(f"{record.key}: its host slice no longer takes a lesion (data changed since records())")
        return painted[0].copy()

    def read_mask(self, record: SliceRecord) -> dict[str, np.ndarray]:
        return {k: m.copy() for k, m in self._cached(record.extra["host"])[1].items()}
