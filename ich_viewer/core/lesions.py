"""Synthetic acute-blood lesions whose shapes define the five ICH subtypes.

Painters work on one 2-D HU slice plus a :class:`SliceGeometry` (per-pixel head coordinates), so
the same code draws lesions into the phantom and, later, pastes them into real CT slices (where
the geometry comes from a skull/ventricle segmentation instead of the phantom's analytic head).

Each :class:`LesionSpec` is a 3-D shape: on a slice at height ``z`` it is drawn with
``zfrac = (z - z_center) / z_half`` in (-1, 1); its cross-section tapers to nothing at the ends,
so a series' per-slice labels follow the lesion's extent. Numpy only (no Qt, no torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

#: Acute blood and perilesional oedema, HU; painted pixels are clipped into these ranges.
BLOOD_HU = (50.0, 90.0)
EDEMA_HU = (15.0, 25.0)
LESION_SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")


@dataclass(frozen=True)
class SliceGeometry:
    """Per-pixel head coordinates of one axial slice ([H, W] arrays; lengths in mm).

    ``theta`` is the angle around the head centre in the head's own frame: 0 anterior, +pi/2
    patient left, -pi/2 patient right, +-pi posterior. ``depth`` is the in-plane distance inward
    from the inner table along the ray from the head centre (< 0 in bone and outside the head).
    ``u``/``v`` are head-frame coordinates (u + = patient left, v + = posterior); ``y`` is the
    image-row coordinate (+ = posterior = dependent for a supine patient: where blood settles).
    """

    theta: np.ndarray
    depth: np.ndarray
    u: np.ndarray
    v: np.ndarray
    y: np.ndarray
    brain: np.ndarray  # bool, parenchyma
    csf: np.ndarray  # bool, subarachnoid CSF: sulci, fissures, cisterns, the rim under the skull
    ventricles: np.ndarray  # bool, ventricular CSF
    pixel_spacing: float


@dataclass(frozen=True)
class LesionSpec:
    """One lesion's parameters; which fields matter depends on ``subtype`` (see the mask functions)."""

    subtype: str
    z_center: float  # mm, height of the largest cross-section
    z_half: float  # mm, half its extent along z
    hu: float = 70.0  # mean density of the blood
    theta_center: float = 0.0  # rad: epidural, subdural, convexity subarachnoid
    theta_half: float = 0.0  # rad: half the arc covered on the central slice
    thickness: float = 0.0  # mm: maximal thickness (epidural, subdural)
    center: tuple[float, float] = (0.0, 0.0)  # (u, v) mm: intraparenchymal, basal subarachnoid
    radius: float = 0.0  # mm: intraparenchymal mean radius, basal subarachnoid reach
    shape: tuple[float, ...] = ()  # intraparenchymal: (amplitude, phase) pairs of harmonics 2, 3, ...
    edema: float = 0.0  # mm: width of the hypodense rim (intraparenchymal)
    level: float = 0.0  # mm, image-row coordinate y of the fluid level (intraventricular)
    region: str = ""  # "basal" or "convexity" (subarachnoid); the bone (epidural)
    sutures: tuple[float, float] = (0.0, 0.0)  # rad: the sutures that bound an epidural

    def zfrac(self, z: float) -> float | None:
        """Where ``z`` lies in the lesion's extent, in (-1, 1), or None outside it."""
        f = (z - self.z_center) / self.z_half
        return f if abs(f) < 1.0 else None


def fast_atan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``arctan2(y, x)`` to ~1e-5 rad at a tenth of numpy's float32 cost (a minimax polynomial)."""
    ax, ay = np.abs(x), np.abs(y)
    a = np.minimum(ax, ay) / np.maximum(np.maximum(ax, ay), np.float32(1e-30))
    q = a * a
    t = (((np.float32(-0.0464964749) * q + np.float32(0.15931422)) * q - np.float32(0.327622764)) * q + 1) * a
    np.subtract(np.float32(math.pi / 2), t, out=t, where=ay > ax)
    np.subtract(np.float32(math.pi), t, out=t, where=x < 0)
    np.negative(t, out=t, where=y < 0)
    return t


def angle_offset(theta: np.ndarray, center: float) -> np.ndarray:
    """Signed angle from ``center`` wrapped into [-pi, pi)."""
    d = theta - np.float32(center)  # both in [-pi, pi], so one wrap is enough
    np.subtract(d, np.float32(2 * math.pi), out=d, where=d >= math.pi)
    np.add(d, np.float32(2 * math.pi), out=d, where=d < -math.pi)
    return d


def _extra_axial(geom: SliceGeometry, lesion: LesionSpec, zf: float, exponent: float, arc_taper: float) -> np.ndarray:
    """Blood against the inner table, thickness ``T * taper * (1 - x^2)^exponent`` along the arc."""
    taper = math.sqrt(1.0 - zf * zf)
    half = lesion.theta_half * taper**arc_taper
    x = angle_offset(geom.theta, lesion.theta_center) / np.float32(half)
    profile = np.clip(1.0 - x * x, 0.0, None) ** np.float32(exponent)
    thickness = np.float32(lesion.thickness * taper) * profile
    return (geom.depth >= 0) & (geom.depth < thickness)


def epidural_mask(geom: SliceGeometry, lesion: LesionSpec, zf: float) -> np.ndarray:
    """Biconvex lens: thickest in the middle, tapering to 0 at both ends, inside its sutures.

    ``theta_center +- theta_half`` must lie between ``sutures`` (the dura is stuck at sutures, so
    an epidural does not cross them); the arc shrinks towards the ends of its z-extent.
    """
    return _extra_axial(geom, lesion, zf, 1.0, 0.5)


def subdural_mask(geom: SliceGeometry, lesion: LesionSpec, zf: float) -> np.ndarray:
    """Crescent: long and thin along the inner table (crosses sutures), concave toward the brain."""
    return _extra_axial(geom, lesion, zf, 0.35, 0.25)


def intraparenchymal_masks(geom: SliceGeometry, lesion: LesionSpec, zf: float) -> tuple[np.ndarray, np.ndarray]:
    """Irregular blob inside the brain and its oedema rim: ``(blood, edema)``."""
    du = geom.u - np.float32(lesion.center[0])
    dv = geom.v - np.float32(lesion.center[1])
    dist = np.hypot(du, dv)
    phi = fast_atan2(dv, du)
    wobble = np.ones_like(dist)
    for k, (amp, phase) in enumerate(zip(lesion.shape[::2], lesion.shape[1::2]), start=2):
        wobble += np.float32(amp) * np.cos(k * phi + np.float32(phase + 1.3 * k * zf))
    reach = np.float32(lesion.radius * math.sqrt(1.0 - zf * zf)) * wobble
    inside = geom.depth > 2.0
    blood = (dist < reach) & inside
    edema = (dist < reach + np.float32(lesion.edema)) & ~blood & geom.brain
    return blood, edema


def intraventricular_mask(geom: SliceGeometry, lesion: LesionSpec, zf: float) -> np.ndarray:
    """Blood layering in the dependent (posterior, larger-row) ventricles below a horizontal level.

    The level is a row coordinate, not a head-frame one: gravity, not the head's tilt, sets it;
    towards the ends of the extent less blood remains (the level sinks).
    """
    return geom.ventricles & (geom.y > np.float32(lesion.level + 8.0 * zf * zf))


def subarachnoid_mask(geom: SliceGeometry, lesion: LesionSpec, zf: float) -> np.ndarray:
    """Blood replacing CSF: in the basal cisterns and Sylvian fissures, or in convexity sulci."""
    taper = math.sqrt(1.0 - zf * zf)
    if lesion.region == "basal":
        near = np.hypot(geom.u - np.float32(lesion.center[0]), geom.v - np.float32(lesion.center[1]))
        return geom.csf & (near < np.float32(lesion.radius * (0.4 + 0.6 * taper)))
    near = np.abs(angle_offset(geom.theta, lesion.theta_center)) < np.float32(lesion.theta_half * taper)
    return geom.csf & near & (geom.depth < np.float32(8.0 + 14.0 * taper))


def lesion_masks(geom: SliceGeometry, lesion: LesionSpec, z: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(blood, edema)`` of ``lesion`` on the slice at height ``z`` (None where it is absent)."""
    zf = lesion.zfrac(z)
    if zf is None:
        return None, None
    if lesion.subtype == "intraparenchymal":
        return intraparenchymal_masks(geom, lesion, zf)
    painter = {
        "epidural": epidural_mask,
        "subdural": subdural_mask,
        "intraventricular": intraventricular_mask,
        "subarachnoid": subarachnoid_mask,
    }[lesion.subtype]
    return painter(geom, lesion, zf), None


def blur121(a: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1]/4 smoothing of the last two axes (edges kept): CT-like partial volume."""
    a = np.asarray(a, np.float32)
    b = a.copy()
    b[..., 1:-1, :] = 0.25 * (a[..., :-2, :] + a[..., 2:, :]) + 0.5 * a[..., 1:-1, :]
    c = b.copy()
    c[..., :, 1:-1] = 0.25 * (b[..., :, :-2] + b[..., :, 2:]) + 0.5 * b[..., :, 1:-1]
    return c


def ct_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 4.0) -> np.ndarray:
    """Gaussian noise smoothed once with [1,2,1] (correlated like CT noise), final std ``sigma``."""
    # [1,2,1]/4 in 2-D keeps sqrt(0.375**2) = 0.375 of the variance -> std factor 0.612.
    return blur121(rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma / 0.6124))


def paint(hu: np.ndarray, mask: np.ndarray, value: float, noise: np.ndarray, clip: tuple[float, float]) -> None:
    """Fill ``mask`` with ``value + noise`` clipped to ``clip``; blend a 1-pixel soft edge outside it.

    The mask's own pixels always end inside ``clip`` (what the labels promise); partial volume
    lives only on the outside, where it makes the edge look like a scanner's, not a stencil's.
    """
    alpha = blur121(mask.astype(np.float32))
    edge = (alpha > 0) & ~mask
    a = alpha[edge]
    hu[edge] = hu[edge] * (1 - a) + (np.float32(value) + noise[edge]) * a
    hu[mask] = np.clip(np.float32(value) + noise[mask], *clip)


def paste_lesions(
    hu: np.ndarray,
    geom: SliceGeometry,
    lesions: list[LesionSpec],
    z: float,
    noise: np.ndarray,
    min_pixels: int = 1,
) -> dict[str, np.ndarray]:
    """Paint ``lesions`` into the 2-D slice ``hu`` (in place) and return subtype -> blood mask.

    Subtypes covering fewer than ``min_pixels`` on this slice are dropped (not painted, no mask),
    so "the slice is positive" and "the mask is non-empty" are the same statement. Oedema is
    painted first so that any blood (of any lesion) wins over it. ``noise`` is the slice's noise
    field (same shape as ``hu``), so painted blood has the image's noise texture.
    """
    blood: dict[str, np.ndarray] = {}
    values: dict[str, float] = {}
    edemas = []
    for lesion in lesions:
        b, e = lesion_masks(geom, lesion, z)
        if b is None:
            continue
        if lesion.subtype in blood:
            blood[lesion.subtype] |= b
        else:
            blood[lesion.subtype], values[lesion.subtype] = b, lesion.hu
        if e is not None:
            edemas.append((lesion.subtype, e))
    blood = {k: m for k, m in blood.items() if int(m.sum()) >= min_pixels}
    for subtype, e in edemas:
        if subtype in blood:
            paint(hu, e, 20.0, noise, EDEMA_HU)
    for k, m in blood.items():
        paint(hu, m, values[k], noise, BLOOD_HU)
    for m in blood.values():  # a later lesion's soft edge may have touched an earlier one
        hu[m] = np.clip(hu[m], *BLOOD_HU)
    return blood


def plan_lesion(
    subtype: str,
    rng: np.random.Generator,
    heights: np.ndarray,
    scale: float,
    inner_radius: Callable[[float, float], float],
    row_of: Callable[[float, float, float], float],
    avoid: Sequence[LesionSpec] = (),
) -> LesionSpec:
    """A random lesion placed where that subtype typically lies, in a head's own frame.

    Heights are mm with 0 at the third ventricle (the phantom's frame; ``scale`` is the head's
    size factor). ``inner_radius(h, theta)`` gives the distance from the head centre to the inner
    table; ``row_of(h, u, v)`` the image-row coordinate (mm) of a head-frame point, which sets an
    intraventricular fluid level. The centre sits on one of ``heights`` so the lesion is always
    on a slice; a subdural goes opposite an epidural in ``avoid`` so both stay recognisable.
    """
    s, side = scale, float(rng.choice([-1.0, 1.0]))
    if subtype == "subdural" and any(les.subtype == "epidural" for les in avoid):
        side = -math.copysign(1.0, next(les.theta_center for les in avoid if les.subtype == "epidural"))
    dh = float(heights[1] - heights[0]) if len(heights) > 1 else 10.0

    def centre(lo: float, hi: float) -> float:
        inside = heights[(heights >= lo * s) & (heights <= hi * s)]
        pool = inside if len(inside) else heights[[int(np.argmin(np.abs(heights - (lo + hi) / 2 * s)))]]
        return float(rng.choice(pool))

    def half(lo: float, hi: float) -> float:
        return max(rng.uniform(lo, hi) * s, 0.6 * dh)

    deg = math.radians
    hu = rng.uniform(62, 78)
    if subtype == "epidural":  # between two sutures: (bone, suture angles in deg, height range)
        bone, s1, s2, lo, hi = [("frontal", 12, 52, 10, 40), ("temporoparietal", 58, 128, -8, 36),
                                ("occipital", 138, 172, -4, 26)][int(rng.choice(3, p=[0.25, 0.55, 0.2]))]
        span = deg(s2 - s1) / 2
        th = span * rng.uniform(0.75, 0.92)
        mid = deg(s1 + s2) / 2 + rng.uniform(-1, 1) * (span - th)
        return LesionSpec(subtype, centre(lo, hi), half(14, 22), hu, side * mid, th, rng.uniform(11, 18) * s,
                          region=bone, sutures=tuple(sorted((side * deg(s1), side * deg(s2)))))
    if subtype == "subdural":
        return LesionSpec(subtype, centre(0, 36), half(26, 40), hu, side * deg(rng.uniform(75, 105)),
                          deg(rng.uniform(50, 70)), rng.uniform(5, 9) * s)
    if subtype == "intraparenchymal":
        radius = rng.uniform(9, 14) * s
        shape = tuple(float(x) for _ in range(3) for x in (rng.uniform(0.05, 0.16), rng.uniform(0, 2 * math.pi)))
        if rng.random() < 0.5:  # hypertensive: basal ganglia
            zc, ctr = centre(-4, 6), (side * (21 + rng.uniform(-2, 2)) * s, rng.uniform(-6, 2) * s)
        else:  # lobar: subcortical, 10-16 mm in from the inner table
            zc, th = centre(18, 42), side * deg(rng.uniform(30, 150))
            reach = inner_radius(zc, th) - radius - rng.uniform(10, 16) * s
            ctr = (reach * math.sin(th), -reach * math.cos(th))
        return LesionSpec(subtype, zc, max(radius * rng.uniform(0.9, 1.2), 0.6 * dh), hu, center=ctr,
                          radius=radius, shape=shape, edema=rng.uniform(3, 6) * s)
    if subtype == "intraventricular":  # level through the atria, horizontal in the image
        zc = centre(-2, 8)
        return LesionSpec(subtype, zc, half(10, 16), hu, level=row_of(zc, 0.0, rng.uniform(14, 20) * s))
    if subtype != "subarachnoid":
        raise ValueError(f"unknown subtype {subtype!r}; valid: {', '.join(LESION_SUBTYPES)}")
    if rng.random() < 0.5:  # around the circle of Willis: basal cisterns and Sylvian fissures
        return LesionSpec(subtype, centre(-20, -10), half(12, 18), hu - 4, center=(0.0, -8 * s),
                          radius=rng.uniform(40, 50) * s, region="basal")
    return LesionSpec(subtype, centre(20, 48), half(14, 22), hu - 4, side * deg(rng.uniform(40, 140)),
                      deg(rng.uniform(22, 36)), region="convexity")
