"""A synthetic axial head-CT series with hemorrhage lesions, for the demo, tests and smoke training.

The head is built in millimetres on an elliptical coordinate system: ``depth`` is the distance
inward from the scalp surface, ``angle`` the elliptical angle. Layers (scalp, outer table, diploe,
inner table, cortex, white matter) are depth bands; ventricles, cisterns and sulci are CSF. Each
lesion is a 3-D shape whose cross-section tapers over its slice range, so per-slice labels follow
its extent exactly. Everything is drawn from ``np.random.default_rng(seed)``: same seed, same study.

Image convention: rows run anterior -> posterior, columns patient right -> left (radiological
display, ImageOrientationPatient [1,0,0,0,1,0]); slices run inferior (skull base) -> superior.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

CLASSES = ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
SUBTYPES = CLASSES[1:]
#: RSNA 2019 label-file order of the subtypes.
RSNA_ORDER = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")
#: A slice is positive for a subtype when at least this much blood of that subtype is on it.
MIN_LESION_AREA_MM2 = 10.0
FIELD_OF_VIEW_MM = 240.0

AIR, SCALP, CORTICAL, DIPLOE, GREY, WHITE, CSF = -1000.0, 40.0, 1200.0, 550.0, 40.0, 27.0, 8.0
SCALP_MM, OUTER_MM, DIPLOE_MM, INNER_MM = 5.0, 2.0, 3.0, 2.0
BRAIN_DEPTH = SCALP_MM + OUTER_MM + DIPLOE_MM + INNER_MM  # where the inner table ends


@dataclass(frozen=True)
class PhantomSeries:
    hu: np.ndarray  # float32 [Z, H, W]
    labels: np.ndarray  # uint8 [Z, 6] in CLASSES order; any = OR of the subtypes
    masks: dict  # subtype -> bool [Z, H, W], only for subtypes present
    z: np.ndarray  # float64 [Z], mm
    pixel_spacing: float
    slice_thickness: float
    seed: int


@dataclass(frozen=True)
class _Head:
    """The random anatomy of one phantom patient."""

    a: float  # left-right semi-axis, mm
    b: float  # antero-posterior semi-axis, mm
    cx: float
    cy: float
    rotation: float
    lobes: float  # phase of the outline's irregularity
    gyri: float  # phase of cortical folding


def make_phantom(
    seed: int = 0,
    subtypes: Sequence[str] = SUBTYPES,
    n_slices: int = 36,
    size: int = 512,
    slice_thickness: float = 5.0,
) -> PhantomSeries:
    """Generate a head-CT series with the given hemorrhage subtypes (possibly none)."""
    unknown = [s for s in subtypes if s not in SUBTYPES]
    if unknown:
        raise ValueError(f"unknown subtype(s) {unknown}; valid: {', '.join(SUBTYPES)}")
    if n_slices < 1 or size < 32:
        raise ValueError("a phantom needs at least 1 slice of at least 32x32 pixels")
    rng = np.random.default_rng(seed)
    head = _Head(
        a=rng.uniform(66, 76), b=rng.uniform(84, 94), cx=rng.uniform(-8, 8), cy=rng.uniform(-8, 8),
        rotation=rng.uniform(-0.12, 0.12), lobes=rng.uniform(0, 2 * np.pi), gyri=rng.uniform(0, 2 * np.pi),
    )
    spacing = FIELD_OF_VIEW_MM / size
    coords = ((np.arange(size) - (size - 1) / 2) * spacing).astype(np.float32)  # float32: 2x faster
    grid = np.meshgrid(coords, coords)  # columns (R->L), rows (A->P)
    levels = np.linspace(0.05, 0.95, n_slices) if n_slices > 1 else np.array([0.5])
    lesions = [_draw_lesion(name, rng) for name in subtypes]

    hu = np.empty((n_slices, size, size), np.float32)
    masks = {name: np.zeros((n_slices, size, size), bool) for name in subtypes}
    for k, level in enumerate(levels):
        anatomy = _slice_anatomy(head, grid, level)
        hu[k] = anatomy.hu
        for lesion in lesions:
            mask, value = lesion.paint(anatomy, level, rng)
            if mask is not None:
                hu[k][mask] = value[mask] if isinstance(value, np.ndarray) else value
                masks[lesion.name][k] |= mask
    noise = gaussian_filter(rng.normal(0.0, 6.0, hu.shape).astype(np.float32), sigma=(0, 0.8, 0.8))
    hu += np.where(hu > AIR + 1, noise, noise * 0.3)

    min_pixels = MIN_LESION_AREA_MM2 / spacing**2
    labels = np.zeros((n_slices, len(CLASSES)), np.uint8)
    for name, mask in masks.items():
        labels[:, CLASSES.index(name)] = mask.sum(axis=(1, 2)) >= min_pixels
    labels[:, 0] = labels[:, 1:].max(axis=1)
    return PhantomSeries(
        hu=hu, labels=labels, masks=masks, z=np.arange(n_slices) * float(slice_thickness),
        pixel_spacing=spacing, slice_thickness=float(slice_thickness), seed=seed,
    )


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Anatomy:
    hu: np.ndarray
    depth: np.ndarray  # mm inward from the scalp surface
    angle: np.ndarray  # elliptical angle, radians
    x: np.ndarray  # mm in the head's frame (left-right)
    y: np.ndarray  # mm in the head's frame (anterior -> posterior)
    ventricles: np.ndarray
    sulci: np.ndarray
    cisterns: np.ndarray
    brain: np.ndarray


def _slice_anatomy(head: _Head, grid: list[np.ndarray], level: float) -> _Anatomy:
    """One axial level: 0 = skull base, 1 = vertex."""
    gx, gy = grid
    cos, sin = np.cos(head.rotation), np.sin(head.rotation)
    x = cos * (gx - head.cx) + sin * (gy - head.cy)
    y = -sin * (gx - head.cx) + cos * (gy - head.cy)
    # The head is widest a third of the way up and closes towards the vertex.
    scale = np.sqrt(np.clip(1.0 - ((level - 0.35) / 0.72) ** 2, 0.05, 1.0))
    a, b = head.a * scale, head.b * scale
    angle = np.arctan2(y / b, x / a)
    outline = 1.0 + 0.03 * np.sin(2 * angle + head.lobes) + 0.015 * np.sin(5 * angle + head.lobes)
    r = np.hypot(x / a, y / b) / outline
    radius = np.hypot(a * np.cos(angle), b * np.sin(angle)) * outline
    depth = (1.0 - r) * radius

    hu = np.full(x.shape, AIR, np.float32)
    hu[depth >= 0] = SCALP
    hu[depth >= SCALP_MM] = CORTICAL
    hu[depth >= SCALP_MM + OUTER_MM] = DIPLOE
    hu[depth >= SCALP_MM + OUTER_MM + DIPLOE_MM] = CORTICAL + 100
    brain = depth >= BRAIN_DEPTH
    hu[brain] = WHITE
    cortex = 3.5 + 1.5 * np.sin(16 * angle + head.gyri)
    hu[brain & (depth < BRAIN_DEPTH + 1.0 + cortex)] = GREY
    # Sulci: thin CSF clefts between gyri, and the interhemispheric fissure.
    sulci = brain & (depth < BRAIN_DEPTH + 9.0) & (np.sin(16 * angle + head.gyri) > 0.93)
    sulci |= brain & (depth < BRAIN_DEPTH + 0.8)  # the thin CSF layer under the inner table
    sulci |= brain & (np.abs(x) < 0.9) & (depth < BRAIN_DEPTH + 30.0) & (y * np.sign(y) > 15)
    ventricles = np.zeros_like(brain)
    if 0.33 < level < 0.68:
        v = np.sin(np.pi * (level - 0.33) / 0.35)  # ventricles grow then shrink with level
        for side in (-1, 1):
            vx, vy = x - side * 7.0 * scale, y + 4.0
            tilt = side * 0.25
            u = (np.cos(tilt) * vx + np.sin(tilt) * vy) / (3.0 + 4.0 * v)
            w = (-np.sin(tilt) * vx + np.cos(tilt) * vy) / (12.0 + 16.0 * v)
            ventricles |= (u**2 + w**2 < 1.0) & brain
    if 0.28 < level < 0.4:
        ventricles |= (np.abs(x) < 1.5) & (np.abs(y - 2.0) < 10.0) & brain  # third ventricle
    cisterns = np.zeros_like(brain)
    if level < 0.34:
        ring = np.hypot(x, (y - 8.0) * 1.2)
        cisterns = (ring > 11.0) & (ring < 15.0) & brain & (y < 22)  # around the midbrain
    if level < 0.22:  # skull base: petrous ridges and the floor of the middle fossa
        petrous = (np.abs(np.abs(x) - 30.0 - 0.6 * y) < 5.0) & (y > -5) & (y < 25) & brain
        hu[petrous] = 1000.0
        brain = brain & ~petrous
    csf = (sulci | ventricles | cisterns) & brain
    hu[csf] = CSF
    return _Anatomy(hu, depth, angle, x, y, ventricles & brain, sulci & brain, cisterns & brain, brain)


# --------------------------------------------------------------------------- lesions


@dataclass(frozen=True)
class _Lesion:
    name: str
    center: float  # level of the thickest cross-section
    half_extent: float  # in level units
    angle: float
    size: float  # mm: thickness or radius
    spread: float  # angular half-width (radians) or shape phase

    def taper(self, level: float) -> float:
        u = (level - self.center) / self.half_extent
        return float(np.sqrt(1.0 - u * u)) if abs(u) < 1.0 else 0.0

    def paint(self, anatomy: _Anatomy, level: float, rng: np.random.Generator):
        """Return (mask, HU value or array) on this slice, or (None, None) outside its extent."""
        p = self.taper(level)
        if p <= 0.0:
            return None, None
        blood = np.float32(rng.uniform(62.0, 80.0))
        return _PAINTERS[self.name](self, anatomy, p, blood)


def _angular_offset(angle: np.ndarray, center: float) -> np.ndarray:
    """Signed angle from ``center``, wrapped to [-pi, pi)."""
    return (angle - np.float32(center) + np.float32(np.pi)) % np.float32(2 * np.pi) - np.float32(np.pi)


def _paint_epidural(lesion: _Lesion, anatomy: _Anatomy, p: float, blood):
    # Biconvex lens against the inner table, confined between two sutures (its angular span).
    u = _angular_offset(anatomy.angle, lesion.angle) / lesion.spread
    thickness = lesion.size * p * np.clip(1.0 - u**2, 0.0, None)
    inside = anatomy.depth - BRAIN_DEPTH
    return (inside >= 0) & (inside < thickness) & anatomy.brain, blood


def _paint_subdural(lesion: _Lesion, anatomy: _Anatomy, p: float, blood):
    # Thin crescent along the inner table over a long arc (crosses sutures).
    u = _angular_offset(anatomy.angle, lesion.angle) / lesion.spread
    thickness = lesion.size * p * np.sqrt(np.clip(1.0 - u**2, 0.0, None))
    inside = anatomy.depth - BRAIN_DEPTH
    return (inside >= 0) & (inside < thickness) & anatomy.brain, blood


def _paint_intraparenchymal(lesion: _Lesion, anatomy: _Anatomy, p: float, blood):
    # Irregular blob deep in the brain with a hypodense (oedema) rim.
    cx, cy = 28.0 * np.cos(lesion.angle), 34.0 * np.sin(lesion.angle)
    dx, dy = anatomy.x - cx, anatomy.y - cy
    theta = np.arctan2(dy, dx)
    radius = lesion.size * p * (1 + 0.25 * np.sin(3 * theta + lesion.spread) + 0.12 * np.sin(5 * theta))
    dist = np.hypot(dx, dy)
    core = (dist < radius) & anatomy.brain
    rim = (dist < radius * 1.45 + 1.5) & anatomy.brain & ~core
    anatomy.hu[rim & ~anatomy.ventricles] = 18.0
    return core, blood


def _paint_intraventricular(lesion: _Lesion, anatomy: _Anatomy, p: float, blood):
    # Blood layers in the dependent (posterior) part of the ventricles: a fluid level.
    if not anatomy.ventricles.any():
        return None, None
    ys = anatomy.y[anatomy.ventricles]
    level = ys.max() - (ys.max() - ys.min()) * 0.45 * p
    return anatomy.ventricles & (anatomy.y > level), blood


def _paint_subarachnoid(lesion: _Lesion, anatomy: _Anatomy, p: float, blood):
    # Blood replaces CSF in the cisterns and in the sulci of one region.
    near = np.abs(_angular_offset(anatomy.angle, lesion.angle)) < lesion.spread * p
    return (anatomy.cisterns | (anatomy.sulci & near)), blood - 8.0


_PAINTERS = {
    "epidural": _paint_epidural,
    "subdural": _paint_subdural,
    "intraparenchymal": _paint_intraparenchymal,
    "intraventricular": _paint_intraventricular,
    "subarachnoid": _paint_subarachnoid,
}


def _draw_lesion(name: str, rng: np.random.Generator) -> _Lesion:
    side = rng.choice([0.0, np.pi])  # patient right (image left) or left
    if name == "epidural":
        return _Lesion(name, rng.uniform(0.5, 0.7), rng.uniform(0.12, 0.18), side + rng.uniform(-0.5, 0.5),
                       rng.uniform(10, 16), rng.uniform(0.35, 0.5))
    if name == "subdural":
        return _Lesion(name, rng.uniform(0.5, 0.7), rng.uniform(0.2, 0.28), (np.pi - side) + rng.uniform(-0.3, 0.3),
                       rng.uniform(4, 7), rng.uniform(1.1, 1.4))
    if name == "intraparenchymal":
        return _Lesion(name, rng.uniform(0.45, 0.6), rng.uniform(0.08, 0.12), rng.uniform(0, 2 * np.pi),
                       rng.uniform(8, 13), rng.uniform(0, 2 * np.pi))
    if name == "intraventricular":
        return _Lesion(name, 0.5, rng.uniform(0.1, 0.15), 0.0, 0.0, 0.0)
    return _Lesion(name, rng.uniform(0.25, 0.35), rng.uniform(0.12, 0.18), rng.uniform(0, 2 * np.pi),
                   0.0, rng.uniform(0.6, 1.0))


# --------------------------------------------------------------------------- writing


def rsna_ids(series: PhantomSeries) -> list[str]:
    """RSNA-style image IDs (``ID_`` + 9 hex digits), deterministic by seed and slice."""
    rng = np.random.default_rng([series.seed, 2019])
    return [f"ID_{value:09x}" for value in rng.integers(0, 16**9, len(series.z))]


def write_phantom_study(
    series: PhantomSeries,
    out_dir: str | Path,
    *,
    patient_name: str = "PHANTOM^ICH",
    patient_id: str | None = None,
    storage: str = "int16",
) -> list[Path]:
    """Write the series as DICOM (``ID_xxxxxxxxx.dcm``) plus an RSNA-format ``labels.csv``."""
    from ich_viewer.core.dicom_write import write_ct_series

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "labels.csv").exists():
        raise ValueError(f"{out} is not empty; choose an empty or new folder (nothing was written)")
    out.mkdir(parents=True, exist_ok=True)
    ids = rsna_ids(series)
    present = [name for name in SUBTYPES if series.labels[:, CLASSES.index(name)].any()]
    paths = write_ct_series(
        out, series.hu, z=series.z, pixel_spacing=series.pixel_spacing,
        slice_thickness=series.slice_thickness, file_names=[f"{i}.dcm" for i in ids],
        patient_name=patient_name, patient_id=patient_id or f"PHANTOM-{series.seed}",
        seed=series.seed, series_description="Synthetic head CT phantom: " + (", ".join(present) or "no hemorrhage"),
        study_description="ICH Viewer phantom (synthetic, not a patient)", storage=storage,
    )
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "Label"])
        for image_id, row in zip(ids, series.labels):
            for name in RSNA_ORDER:
                writer.writerow([f"{image_id}_{name}", int(row[CLASSES.index(name)])])
    return paths
