"""A synthetic axial head-CT series with hemorrhage, for the demo study, tests and smoke training.

The head is analytic and 3-D: nested ellipsoid-like surfaces (skin, outer table, diploe, inner
table, a thin CSF rim, the brain surface) cut at each slice's height, cortex with sulci and
gyri, the interhemispheric and Sylvian fissures, ventricles, basal ganglia, cisterns, brainstem
and posterior fossa, and skull base bone, sinuses and orbits at the lowest levels. Structures are
3-D shapes whose size follows the slice height, so neighbouring slices agree. Lesions are drawn
by :mod:`ich_viewer.core.lesions` (reusable on real slices). Numpy only; no Qt, no torch.

Conventions: rows run anterior -> posterior, columns patient right -> left (radiological
display, ImageOrientationPatient [1,0,0,0,1,0]); slices run inferior (skull base) -> superior
(vertex), z increasing; z spacing equals ``slice_thickness``. The stack always spans skull base
to vertex: the anatomy is stretched along z to fit ``n_slices`` (a phantom, not calibrated
anatomy). Deterministic: the same arguments give identical arrays (and, written, identical files).

Labelling rule: a slice is positive for a subtype iff that subtype's mask covers at least
:func:`min_lesion_pixels` pixels on it (``max(4, ceil(MIN_LESION_AREA_MM2 / pixel_spacing**2))``,
12 pixels at 512x512); smaller tips are neither painted nor kept, so ``labels`` == "mask non-empty".
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ich_viewer.core.contract import ABBREVIATIONS, CLASSES
from ich_viewer.core.lesions import LesionSpec, SliceGeometry, blur121, ct_noise, fast_atan2, paste_lesions, plan_lesion

SUBTYPES = CLASSES[1:]
#: Row order of the RSNA 2019 label file (stage_2_train.csv).
RSNA_ORDER = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any")
MIN_LESION_AREA_MM2 = 2.5
FIELD_OF_VIEW_MM = 240.0
#: Head CT is 512 px, sometimes 1024; 400 slices is 0.625 mm over 25 cm. Larger asks only exhaust memory.
MAX_SIZE, MAX_SLICES = 1024, 400
NOISE_SIGMA_HU = 4.0
MANUFACTURER, MODEL_NAME = "ICH Viewer", "Synthetic head CT phantom"

# Tissue codes of the anatomy label map (PhantomTruth.tissue).
TISSUES = ("air", "soft", "bone", "diploe", "csf", "ventricle", "grey", "white", "deep grey", "brainstem",
           "falx", "calcification", "sinus", "globe", "fat", "lens", "petrous", "cerebellum")
(AIR, SOFT, BONE, DIPLOE, CSF, VENT, GM, WM, DEEP, STEM, FALX, CALC, SINUS, GLOBE, FAT, LENS, DENSE, CBL) = range(18)
BRAIN_TISSUES = (GM, WM, DEEP, STEM, CBL)
_H_BASE, _H_TOP = -50.0, 67.0  # mm (head of scale 1) of the first and last slice; 0 = third ventricle


@dataclass(frozen=True)
class PhantomSeries:
    """One synthetic axial series and its ground truth (per-slice labels and per-pixel masks)."""

    hu: np.ndarray  # float32 [Z, H, W] in HU
    labels: np.ndarray  # uint8 [Z, 6] in CLASSES order; any = OR of the subtypes
    masks: dict[str, np.ndarray]  # subtype -> bool [Z, H, W], only for subtypes present
    z: np.ndarray  # float64 [Z], slice positions in mm (ImagePositionPatient z)
    pixel_spacing: float  # mm, square pixels
    slice_thickness: float  # mm
    seed: int


@dataclass(frozen=True)
class Head:
    """The random anatomy of one phantom patient (mm, radians)."""

    scale: float  # overall size; every anatomical length is multiplied by it
    a: float  # outer (skin) semi-axis, left-right, at the widest level
    b: float  # outer semi-axis, antero-posterior
    c_up: float  # skin height above level 0 (the vertex)
    c_low: float  # how slowly the head narrows below level 0
    egg: float  # posterior widening
    angle: float  # in-plane rotation
    cx: float  # head centre in patient x/y (mm from the image centre)
    cy: float
    tilt: float  # y drift of the centre per mm of height (head flexion)
    scalp: float
    table: float  # thickness of each cortical table
    diploe: float
    rim: float  # CSF between the inner table and the brain
    sulcus: float  # sulcal width (atrophy)
    vent: float  # ventricle size factor
    phases: tuple[float, float, float, float]
    lut: tuple[float, ...]  # HU per tissue code


@dataclass(frozen=True)
class PhantomTruth:
    """What a test or a curious developer may want besides the image: the anatomy and lesion plan."""

    head: Head
    heights: np.ndarray  # [Z] level of each slice in the head's mm (0 = third ventricle)
    tissue: np.ndarray  # uint8 [Z, H, W] tissue codes (TISSUES) before lesions
    theta: np.ndarray  # float32 [Z, H, W] angle around the head centre (SliceGeometry.theta)
    depth: np.ndarray  # float32 [Z, H, W] mm below the inner table (SliceGeometry.depth)
    lesions: tuple[LesionSpec, ...]


def min_lesion_pixels(pixel_spacing: float) -> int:
    """Pixels a subtype must cover on a slice for that slice to be positive (see module doc)."""
    return max(4, math.ceil(MIN_LESION_AREA_MM2 / pixel_spacing**2 - 1e-9))


def make_phantom(seed: int = 0, subtypes: Sequence[str] = SUBTYPES, n_slices: int = 36, size: int = 512,
                 slice_thickness: float = 5.0) -> PhantomSeries:
    """A head-CT series with the given hemorrhage subtypes (none: a normal head)."""
    return _generate(seed, subtypes, n_slices, size, slice_thickness, debug=False)[0]


def make_phantom_debug(seed: int = 0, subtypes: Sequence[str] = SUBTYPES, n_slices: int = 36, size: int = 512,
                       slice_thickness: float = 5.0) -> tuple[PhantomSeries, PhantomTruth]:
    """:func:`make_phantom` plus the anatomy and lesion plan (for tests; costs memory)."""
    return _generate(seed, subtypes, n_slices, size, slice_thickness, debug=True)


def _generate(seed, subtypes, n_slices, size, slice_thickness, debug):
    subtypes = list(dict.fromkeys(subtypes))
    unknown = [s for s in subtypes if s not in SUBTYPES]
    if unknown:
        raise ValueError(f"unknown subtype(s) {', '.join(map(repr, unknown))}; valid: {', '.join(SUBTYPES)}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (1 <= n_slices <= MAX_SLICES and 32 <= size <= MAX_SIZE and slice_thickness > 0):
        raise ValueError(f"a phantom needs 1 to {MAX_SLICES} slices, a size of 32 to {MAX_SIZE} pixels and "
                         "a slice thickness above 0")
    seed = int(seed)
    px = FIELD_OF_VIEW_MM / size
    # Independent streams: the head and noise do not change when the lesion list does.
    head = _sample_head(np.random.default_rng([seed, 1]), px)
    noise_rng = np.random.default_rng([seed, 2])
    frac = np.linspace(0.0, 1.0, n_slices) if n_slices > 1 else np.array([0.45])
    heights = (_H_BASE + frac * (_H_TOP - _H_BASE)) * head.scale
    lesions: list[LesionSpec] = []
    for name in subtypes:
        lesions.append(plan_lesion(name, np.random.default_rng([seed, 3, SUBTYPES.index(name)]), heights, head.scale,
                                   inner_radius=lambda h, t: float(_radii(head, h, math.sin(t), -math.cos(t))[4]),
                                   row_of=lambda h, u, v: head.cy + head.tilt * h + math.sin(head.angle) * u
                                   + math.cos(head.angle) * v, avoid=lesions))
    lesions = tuple(lesions)
    min_px = min_lesion_pixels(px)

    hu = np.full((n_slices, size, size), head.lut[AIR], np.float32)
    masks = {name: np.zeros((n_slices, size, size), bool) for name in subtypes}
    if debug:
        tissue = np.zeros(hu.shape, np.uint8)
        theta, depth = np.zeros(hu.shape, np.float32), np.full(hu.shape, -1e3, np.float32)
    lut = np.asarray(head.lut, np.float32)
    for k, h in enumerate(heights):
        box, lab, geom = _anatomy(head, float(h), px, size)
        noise = ct_noise(noise_rng, (size, size), NOISE_SIGMA_HU)
        image = lut[lab]
        bone = lab == BONE
        image[bone] *= 1.0 + 0.06 * np.sin(7 * geom.theta[bone] + h / 9.0)
        image = blur121(image)
        image += noise[box]
        for name, mask in paste_lesions(image, geom, list(lesions), float(h), noise[box], min_px).items():
            masks[name][k][box] = mask
        hu[k] += noise
        hu[k][box] = image
        if debug:
            tissue[k][box], theta[k][box], depth[k][box] = lab, geom.theta, geom.depth
    labels = np.zeros((n_slices, len(CLASSES)), np.uint8)
    for name, mask in masks.items():
        labels[:, CLASSES.index(name)] = mask.any(axis=(1, 2))
    labels[:, 0] = labels[:, 1:].max(axis=1)
    masks = {name: m for name, m in masks.items() if m.any()}
    z0 = -round(0.41 * (n_slices - 1))  # z = 0 near the third ventricle
    z = np.array([round((z0 + k) * float(slice_thickness), 4) for k in range(n_slices)], np.float64)
    series = PhantomSeries(hu=hu, labels=labels, masks=masks, z=z, pixel_spacing=px,
                           slice_thickness=float(slice_thickness), seed=seed)
    truth = PhantomTruth(head, heights, tissue, theta, depth, lesions) if debug else None
    return series, truth


def _sample_head(rng: np.random.Generator, px: float) -> Head:
    s = rng.uniform(0.92, 1.05)
    lut = [0.0] * len(TISSUES)
    lut[AIR], lut[SOFT] = -1000.0, rng.uniform(30, 45)
    lut[BONE], lut[DIPLOE] = rng.uniform(1150, 1350), rng.uniform(430, 620)
    lut[CSF] = lut[VENT] = rng.uniform(4, 10)
    lut[GM], lut[WM], lut[DEEP], lut[STEM] = rng.uniform(38, 42), rng.uniform(26.5, 29), rng.uniform(35, 38), 31.0
    lut[FALX], lut[CALC], lut[SINUS], lut[GLOBE], lut[FAT], lut[LENS] = 55.0, 220.0, -960.0, 8.0, -95.0, 95.0
    lut[DENSE], lut[CBL] = rng.uniform(1400, 1500), rng.uniform(32, 35)
    return Head(
        scale=s, a=72 * s * rng.uniform(0.96, 1.04), b=93 * s * rng.uniform(0.96, 1.04), c_up=86 * s, c_low=125 * s,
        egg=rng.uniform(0.02, 0.06), angle=math.radians(rng.uniform(-8, 8)), cx=rng.uniform(-8, 8),
        cy=rng.uniform(-6, 6), tilt=math.tan(math.radians(rng.uniform(-6, 6))),
        scalp=rng.uniform(4, 6.5), table=max(rng.uniform(1.6, 2.2), 1.3 * px),
        diploe=max(rng.uniform(2.5, 4), 1.2 * px),
        rim=max(rng.uniform(0.8, 1.6), 0.8 * px), sulcus=max(rng.uniform(1.0, 1.8), 0.9 * px),
        vent=rng.uniform(0.85, 1.3), phases=tuple(float(x) for x in rng.uniform(0, 2 * np.pi, 4)), lut=tuple(lut),
    )


def _radii(hd: Head, h: float, cu, cv) -> list:
    """In-plane radii along the direction (cu, cv) of: skin, diploe start, diploe end, inner table
    start, inner-table inner surface, brain surface. Each surface is the skin shrunk by its depth,
    cut at height h, so slices near the vertex cut the skull obliquely (thick bone, small brain)."""
    re = 1.0 / np.sqrt((cu / hd.a) ** 2 + (cv / hd.b) ** 2) * (1.0 + hd.egg * cv)
    kt = (0.8 + 0.45 * cv * cv) * (1.0 + 0.5 * min(max((-h / hd.scale - 15.0) / 30.0, 0.0), 1.0))
    skull = 2 * hd.table + hd.diploe
    out = []
    for d, dk in ((0.0, 0.0), (hd.scalp, 0.0), (hd.scalp, hd.table), (hd.scalp, hd.table + hd.diploe),
                  (hd.scalp, skull), (hd.scalp + hd.rim, skull)):
        c = (hd.c_up if h >= 0 else hd.c_low) - d - dk
        p = math.sqrt(max(0.0, 1.0 - (h / c) ** 2)) if c > 0 else 0.0
        out.append((re - d - dk * kt) * np.float32(p))
    return out


def _bump(hn: float, h0: float, h1: float) -> float:
    """Size factor of a structure spanning heights h0..h1 (ellipsoidal: 1 in the middle, 0 at the ends)."""
    f = (2 * hn - h0 - h1) / (h1 - h0)
    return math.sqrt(1 - f * f) if abs(f) < 1 else 0.0


# Deep structures, painted in this order in the head frame (u: + patient left, v: + posterior;
# mm at scale 1): (kind, tissue, geometry, h0, h1, paired left/right). E: ellipse (u, v, au, av);
# C: tapered capsule (u0, v0, u1, v1, r0, r1); S: star (u, v, radius, lobes, amplitude).
# Sizes follow _bump over h0..h1; ventricles also scale with Head.vent.
_SHAPES = (
    ("E", CSF, (0, 3, 15, 14), -24, -6, False),  # perimesencephalic (ambient) cistern
    ("S", CSF, (0, -14, 10, 5, 0.3), -26, -10, False),  # suprasellar cistern
    ("E", CSF, (0, 18, 8, 5), -16, -2, False),  # quadrigeminal cistern
    ("E", CSF, (0, -9, 16, 13), -50, -24, False),  # prepontine cistern
    ("E", CSF, (0, 64, 11, 7), -56, -34, False),  # cisterna magna
    ("E", STEM, (0, 3, 12, 10), -24, -6, False),  # midbrain
    ("E", CSF, (0, -7, 3, 3), -22, -8, False),  # interpeduncular fossa
    ("E", STEM, (0, -2, 14, 12), -52, -22, False),  # pons
    ("E", DEEP, (21, -3, 5.5, 13), -10, 10, True),  # lentiform nucleus
    ("E", DEEP, (9, 6, 6.5, 9.5), -10, 10, True),  # thalamus
    ("C", VENT, (3, -6, 9, -24, 2.5, 4.5), -4, 20, True),  # frontal horn
    ("C", VENT, (6, -14, 11, 20, 3.5, 4.0), 12, 32, True),  # body of the lateral ventricle
    ("C", VENT, (15, 4, 20, 20, 3.5, 6.0), -6, 16, True),  # atrium
    ("C", VENT, (20, 20, 15, 38, 4.5, 1.5), -6, 12, True),  # occipital horn
    ("C", VENT, (26, -16, 28, -2, 1.5, 2.2), -28, -10, True),  # temporal horn
    ("C", VENT, (0, -10, 0, 10, 1.7, 1.7), -14, 6, False),  # third ventricle
    ("E", VENT, (0, 17, 6, 3.5), -42, -20, False),  # fourth ventricle
    ("E", DEEP, (12.5, -15, 4.5, 7), -4, 20, True),  # caudate head
    ("E", WM, (0, -16, 0.7, 10), -4, 30, False),  # septum pellucidum
    ("E", CALC, (0, 18, 2, 2), -4, 4, False),  # pineal calcification
    ("E", CALC, (18, 14, 2.2, 2.2), -2, 10, True),  # choroid plexus calcification
    ("E", BONE, (0, -24, 9, 5), -62, -26, False),  # clivus
    ("E", BONE, (0, -40, 15, 10), -62, -32, False),  # sphenoid sinus walls
    ("E", SINUS, (0, -40, 13, 8), -62, -32, False),  # sphenoid sinus
    ("C", BONE, (30, -44, 50, -32, 2.0, 3.0), -42, -30, True),  # greater wing of the sphenoid (temporal fossa)
    ("C", DENSE, (54, 16, 20, -12, 8.0, 2.0), -48, -28, True),  # petrous bone: a wedge narrowing to its apex
    ("E", SINUS, (54, 24, 10, 10), -58, -32, True),  # mastoid air cells (bony septa added below)
)
# Sylvian fissure and insular cistern: CSF clefts lined by cortex (capsules as above).
_FISSURES = (((34, -10, 36, 7, 0.9), -12, 14), ((36, -4, 72, -12, 1.1), -16, 10), ((10, -16, 36, -8, 1.6), -24, -10))


def _hash01(j: np.ndarray, salt: int) -> np.ndarray:
    """Platform-independent pseudo-random number in [0, 1) per integer (a sulcus' index)."""
    x = j.astype(np.int64).astype(np.uint32) * np.uint32(2654435761) + np.uint32(salt)
    return ((x >> np.uint32(13)) & np.uint32(1023)).astype(np.float32) / np.float32(1024)


def _cells(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    """Irregular foam of air cells with thin septa (mastoid, ethmoid), as a bool mask."""
    return np.sin(a * 1.3 + p) * np.sin(b * 1.1 - p) + 0.5 * np.sin(a * 0.7 + b * 0.9 + 2 * p) < 0.25


def _anatomy(hd: Head, h: float, px: float, size: int):
    """Tissue codes and lesion geometry of the slice at height h, on the head's bounding box."""
    s, hn = hd.scale, h / hd.scale
    cy = hd.cy + hd.tilt * h
    ca, sa = math.cos(hd.angle), math.sin(hd.angle)
    grow = 1 + hd.egg

    def span(c, e):
        lo = int(math.floor((c - e) / px + (size - 1) / 2))
        return slice(min(max(lo, 0), size), min(max(lo + int(2 * e / px) + 3, 0), size))

    box = (span(cy, math.hypot(hd.a * sa, hd.b * ca) * grow + px),
           span(hd.cx, math.hypot(hd.a * ca, hd.b * sa) * grow + px))
    ys = ((np.arange(size)[box[0]] - (size - 1) / 2) * px - cy).astype(np.float32)[:, None]
    xs = ((np.arange(size)[box[1]] - (size - 1) / 2) * px - hd.cx).astype(np.float32)[None, :]
    u, v = np.float32(ca) * xs + np.float32(sa) * ys, np.float32(ca) * ys - np.float32(sa) * xs
    r = np.sqrt(u * u + v * v) + np.float32(1e-3)
    cu, cv = u / r, v / r
    theta = fast_atan2(u, -v)
    r_skin, r_dip, r_dip2, r_inner, r_icv, r_brain = _radii(hd, h, cu, cv)
    lab = np.zeros(u.shape, np.uint8)
    for radius, code in ((r_skin, SOFT), (r_dip, BONE), (r_dip2, DIPLOE), (r_inner, BONE), (r_icv, CSF)):
        lab[r < radius] = code
    brain = r < r_brain
    p0, p1, p2, p3 = hd.phases

    def sub_box(cu_: float, cv_: float, radius: float) -> tuple[slice, slice]:
        """Index box of the crop covering the disc (cu_, cv_, radius) given in head-frame mm."""
        row = (cy + sa * cu_ + ca * cv_) / px + (size - 1) / 2 - box[0].start
        col = (hd.cx + ca * cu_ - sa * cv_) / px + (size - 1) / 2 - box[1].start
        m = radius / px + 2
        return (slice(max(int(row - m), 0), max(int(row + m) + 2, 0)),
                slice(max(int(col - m), 0), max(int(col + m) + 2, 0)))

    # Cortex: sulci are CSF clefts running inward from the surface, each with its own depth,
    # narrowing to the fundus, with shallow secondary sulci between; grey matter lines every CSF
    # surface (outer, sulcal, fissural) to ~2.6 mm, white matter fills the rest. Below the
    # tentorium (posterior fossa) the folia of the cerebellum are finer and shallower.
    db = r_brain - r
    infra = (v > (45 + (hn + 8) * 2.2) * s + 0.8 * np.abs(u)) if hn < -8 else np.zeros(u.shape, bool)
    n_c = max(2 * math.pi * float(r_brain.max()) / (12.0 * s), 6.0)
    n = np.float32(n_c) + infra * np.float32(1.5 * n_c)
    phi = (theta * (n / np.float32(2 * math.pi)) + 0.5 * np.sin(2 * theta + (h / 11 + p0))
           + 0.3 * np.sin(5 * theta + (p1 - h / 7)) + 0.15 * np.sin(11 * theta + p3)
           + 0.12 * np.sin(db / np.float32(3 * s) + 3 * theta + p2))
    per_mm = n / (np.float32(2 * math.pi) * r)
    to_csf, csf = db.copy(), np.zeros(u.shape, bool)
    for shift, salt, lo, span_mm in ((0.0, 17, 4.0, 16.0), (0.5, 91, 1.5, 6.0)):
        j = np.round(phi + shift)
        arc = np.abs(phi + shift - j) / per_mm
        deep = np.float32(lo * s) + np.float32(span_mm * s) * _hash01(j, salt)
        deep *= 0.8 + 0.2 * np.sin(h / (9 * s) + 2.1 * j)
        if shift:
            deep *= _hash01(j, salt + 1) > 0.45
        deep = np.where(infra, np.float32((3.0 if not shift else 0.0) * s), deep)
        narrowing = np.clip(1.2 - 0.7 * db / np.maximum(deep, 0.1), 0.35, 1.0)  # towards the fundus
        half_w = np.float32(0.5 * hd.sulcus) * narrowing * (1 - infra * np.float32(0.5))
        csf |= (arc < half_w) & (db < deep)
        gap_a, gap_d = np.maximum(arc - half_w, 0), np.maximum(db - deep, 0)
        to_csf = np.minimum(to_csf, np.sqrt(gap_a * gap_a + gap_d * gap_d))
    # Interhemispheric fissure with the falx; interrupted by the corpus callosum / diencephalon.
    if hn > 26:
        gaps = (1e9, 1e9)  # above the corpus callosum the fissure runs front to back
    else:
        gaps = (-30 * s, 32 * s) if hn > -4 else (-24 * s, 26 * s)
    fissure = ((v < gaps[0]) | (v > gaps[1])) & ~(infra & (v < 50 * s)) if hn > -52 else np.zeros(u.shape, bool)
    wiggle = np.float32(0.6 * s) * np.sin(v / np.float32(9 * s) + p1)
    d_fis = np.abs(u - wiggle) - np.float32(max(0.8 * s + 0.5 * hd.sulcus, 1.2 * px) / 2)
    d_fis[~fissure] = 1e3
    csf |= d_fis < 0
    to_csf = np.minimum(to_csf, d_fis)
    for (u0, v0, u1, v1, rad), h0, h1 in _FISSURES:
        if _bump(hn, h0, h1) > 0:
            for side in (-1, 1):
                a0, a1 = side * u0 * s, side * u1 * s
                sub = sub_box((a0 + a1) / 2, (v0 + v1) / 2 * s, math.hypot(a1 - a0, (v1 - v0) * s) / 2 + 8 * s)
                vw = v[sub] + np.float32(1.5 * s) * np.sin(u[sub] / np.float32(4 * s) + p2)  # a wavy cleft
                d = _segment_distance(u[sub], vw, a0, v0 * s, a1, v1 * s)[0] - max(rad * s, 0.6 * px)
                csf[sub] |= d < 0
                np.minimum(to_csf[sub], d, out=to_csf[sub])
    ribbon = np.float32(max(2.6 * s, 1.0 * px)) + infra * np.float32(1e3)  # cerebellum: cortex throughout
    tissue = np.where(csf, np.uint8(CSF), np.where(to_csf < ribbon, np.uint8(GM), np.uint8(WM)))
    lab[brain] = tissue[brain]
    lab[brain & infra & (lab == GM)] = CBL
    if hn > -10:
        lab[brain & fissure & (np.abs(u - wiggle) < max(0.35, 0.5 * px))] = FALX

    # Deep structures, each evaluated only on its own bounding box.
    for kind, code, g, h0, h1, paired in _SHAPES:
        w = _bump(hn, h0, h1)
        if w <= 0:
            continue
        k = s * w * (hd.vent if code == VENT else 1.0)
        for side in (-1, 1) if paired else (1,):
            if kind == "C":
                u0, v0, u1, v1 = side * g[0] * s, g[1] * s, side * g[2] * s, g[3] * s
                r0, r1 = max(g[4] * k, 0.6 * px), max(g[5] * k, 0.6 * px)
                sub = sub_box((u0 + u1) / 2, (v0 + v1) / 2, math.hypot(u1 - u0, v1 - v0) / 2 + max(r0, r1))
                dist, t = _segment_distance(u[sub], v[sub], u0, v0, u1, v1)
                inside = dist < r0 + (r1 - r0) * t
            else:
                cu_, cv_ = side * g[0] * s, g[1] * s
                au, av = max(g[2] * k, 0.6 * px), max(g[3] * k, 0.6 * px)
                sub = sub_box(cu_, cv_, max(au, av) * (1.4 if kind == "S" else 1.0))
                du, dv = u[sub] - np.float32(cu_), v[sub] - np.float32(cv_)
                if kind == "S":
                    inside = du * du + dv * dv < (au * (1 + g[4] * np.cos(g[3] * fast_atan2(du, -dv)))) ** 2
                else:
                    inside = (du / au) ** 2 + (dv / av) ** 2 < 1
                if code == SINUS and g[0] > 40:  # mastoid: air cells separated by bony septa
                    inside &= _cells(du / s, dv / s, p3 + 0.4 * hn)
                    lab[sub][((du / au) ** 2 + (dv / av) ** 2 < 1) & ~inside & (r[sub] < r_dip[sub])] = BONE
            limit = r_brain[sub] if code in (CSF, STEM, DEEP, VENT, WM, CALC) else r_dip[sub]
            lab[sub][inside & (r[sub] < limit)] = code

    if hn < -28:  # skull base in front of the brain: bone, sinuses, nasal cavity, orbits
        b_h = float(_radii(hd, h, 0.0, -1.0)[0])  # the skin, straight ahead
        front = (v < (-b_h + (12 + (-28 - hn) * 2.2) * s) - 0.012 * u * u / s) & (r < r_dip)
        lab[front] = DIPLOE
        mid = front & (np.abs(u) < 12 * s)
        if hn < -44:  # maxillary sinuses either side of the nasal cavity (septum in the middle)
            for side in (-1, 1):
                du, dv = u - side * 27 * s, v + b_h - 32 * s
                lab[front & ((du / 13) ** 2 + (dv / 15) ** 2 < s * s)] = SINUS
            lab[mid & (np.abs(u) < 9 * s) & (np.abs(u) > max(1.0 * s, px))] = SINUS
        else:
            lab[mid & _cells(u / s, v / s, p3 + 0.4 * hn)] = SINUS  # ethmoid air cells
        if -44 <= hn < -33:
            for side in (-1, 1):
                du, dv = u - side * 30 * s, v + b_h - 17 * s
                lab[front & ((du / 15) ** 2 + (dv / 17) ** 2 < s * s)] = FAT
                lab[front & (du * du + dv * dv < (11.5 * s) ** 2)] = GLOBE
                lab[front & ((du / 4) ** 2 + ((dv + 10 * s) / 1.6) ** 2 < s * s)] = LENS
    geom = SliceGeometry(theta=theta, depth=r_icv - r, u=u, v=v, y=np.broadcast_to(ys + np.float32(cy), u.shape),
                         brain=((lab >= GM) & (lab <= STEM)) | (lab == CBL), csf=(lab == CSF) & (r < r_icv),
                         ventricles=lab == VENT, pixel_spacing=px)
    return box, lab, geom


def _segment_distance(u, v, u0, v0, u1, v1):
    """Distance (mm) from each point to the segment (u0, v0)-(u1, v1), and where along it (0..1)."""
    du, dv = np.float32(u1 - u0), np.float32(v1 - v0)
    pu, pv = u - np.float32(u0), v - np.float32(v0)
    t = np.clip((pu * du + pv * dv) / max(float(du * du + dv * dv), 1e-9), 0, 1)
    eu, ev = pu - t * du, pv - t * dv
    return np.sqrt(eu * eu + ev * ev), t


# --------------------------------------------------------------------------- writing


_ID = re.compile(r"ID_[0-9a-f]{9}\.dcm")


def phantom_key(series: PhantomSeries) -> str:
    """What makes two phantoms the same study: seed, shape, thickness and the subtypes present."""
    z, h, w = series.hu.shape
    return f"{series.seed}:{z}x{h}x{w}:{series.slice_thickness:g}:{'+'.join(s for s in SUBTYPES if s in series.masks)}"


def rsna_ids(series: PhantomSeries) -> list[str]:
    """RSNA-2019-style image IDs (``ID_`` + 9 lowercase hex), deterministic by seed and slice index."""
    ids: list[str] = []
    for k in range(len(series.z)):
        salt = 0
        while True:
            digest = hashlib.sha256(f"ich-viewer-phantom/{phantom_key(series)}/{k}/{salt}".encode()).hexdigest()
            if f"ID_{digest[:9]}" not in ids:
                break
            salt += 1
        ids.append(f"ID_{digest[:9]}")
    return ids


def _is_previous_output(out: Path) -> bool:
    """True if every entry of ``out`` is a phantom DICOM file (our marker in its header) or labels.csv."""
    from ich_viewer.core.dicom_write import read_maker

    for entry in out.iterdir():
        if entry.name == "labels.csv" and entry.is_file():
            continue
        if not (entry.is_file() and _ID.fullmatch(entry.name)) or read_maker(entry) != (MANUFACTURER, MODEL_NAME):
            return False
    return True


def write_phantom_study(series: PhantomSeries, out_dir: str | Path, *, patient_name: str = "PHANTOM^ICH",
                        patient_id: str | None = None, storage: str = "int16") -> list[Path]:
    """Write one DICOM file per slice (``ID_<9 hex>.dcm``) plus an RSNA-format ``labels.csv``.

    ``labels.csv`` is stage_2_train.csv's format: ``ID,Label`` then, per slice, six rows
    ``ID_<hex>_<subtype>`` in RSNA_ORDER. A non-empty folder is refused (ValueError, nothing
    written) unless it holds only a previous phantom output, which is replaced. Returns the DICOM
    paths in slice order (inferior to superior).
    """
    from ich_viewer.core.dicom_write import deterministic_uid, write_ct_series

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder; choose a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        if not _is_previous_output(out):
            raise ValueError(f"{out} is not empty and is not a previous phantom output; choose a new or empty folder "
                             "(nothing was written)")
        for entry in out.iterdir():
            entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    key, ids = phantom_key(series), rsna_ids(series)
    patient_id = patient_id or f"PHANTOM-{series.seed}"

    def uid(*parts):
        return deterministic_uid("ich-viewer-phantom", key, patient_id, *parts)

    present = [name for name in SUBTYPES if name in series.masks]
    description = f"Phantom seed {series.seed}: " + (", ".join(present) or "no hemorrhage")
    if len(description) > 64:  # the LO limit: use the radiology abbreviations instead
        description = f"Phantom seed {series.seed}: " + ", ".join(ABBREVIATIONS[name] for name in present)
    paths = write_ct_series(
        out, series.hu, z=series.z, pixel_spacing=series.pixel_spacing, slice_thickness=series.slice_thickness,
        file_names=[f"{i}.dcm" for i in ids], patient_name=patient_name, patient_id=patient_id,
        study_uid=uid("study"), series_uid=uid("series"), sop_uids=[uid("image", k) for k in range(len(ids))],
        frame_uid=uid("frame"), series_description=description,
        study_description="ICH Viewer synthetic head CT (not a patient)", storage=storage,
        manufacturer=MANUFACTURER, model_name=MODEL_NAME,
    )
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ID", "Label"])
        for image_id, row in zip(ids, series.labels):
            for name in RSNA_ORDER:
                writer.writerow([f"{image_id}_{name}", int(row[CLASSES.index(name)])])
    return paths
