"""Sanity limits on header values, checked before anything is allocated or decoded.

A header can claim anything: 65535x65535 pixels in a 176 KB file, 2^31 frames, NaN rescale, a colour
JPEG 2000 labelled as CT (which makes GDCM abort the process). Every value the loader relies on is
read here, from a pydicom ``Dataset`` or the fast scan's ``ScannedHeader`` alike (both have ``get``),
and either comes back clean or the file is refused with a sentence naming the tag, never the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Head CT is 512x512, sometimes 1024; 4096 leaves room for any CT detector.
MAX_DIMENSION = 4096
#: More frames than any enhanced CT series holds in one file.
MAX_FRAMES = 4096
#: Pixels in one file (all frames): 1 GB of int16 HU at most.
MAX_PIXELS = 2**29
BITS_ALLOCATED = (8, 16, 32)
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
#: Rescale bounds far beyond any CT scale (extended scales reach ~30,000 HU), so HU stay finite in float32.
MAX_ABS_SLOPE = 1e4
MAX_ABS_INTERCEPT = 1e6
# A position or spacing in mm beyond a kilometre is not a measurement: 1e308 passed as finite and made a slice
# spacing of 5e307 mm (and differences of two such positions overflow to infinity).
MAX_ABS_MM = 1e6


class HeaderError(ValueError):
    """A header value is missing, malformed or out of range; the message names the tag."""


def _several(value) -> bool:
    """A multi-valued element: pydicom's MultiValue (a MutableSequence) or the fast scan's list."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def first(value):
    """The first of a multi-valued element, else the value."""
    if _several(value):
        return value[0] if len(value) else None
    return value


def integer(ds, keyword: str, default: int | None = None, low: int | None = None, high: int | None = None) -> int | None:
    """An integer element, ``default`` when absent or empty; :class:`HeaderError` when malformed or out of range."""
    raw = first(ds.get(keyword))
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    try:
        value = float(raw)
        if not value.is_integer():
            raise ValueError
        value = int(value)
    except (TypeError, ValueError, OverflowError):
        raise HeaderError(f"its {keyword} ({str(raw)[:20]!r}) is not a whole number") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise HeaderError(f"its {keyword} ({value}) is outside {low}..{high}")
    return value


def number(ds, keyword: str, default: float) -> float:
    """A finite decimal element, ``default`` when absent or empty; :class:`HeaderError` otherwise."""
    raw = first(ds.get(keyword))
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise HeaderError(f"its {keyword} ({str(raw)[:20]!r}) is not a number") from None
    if not math.isfinite(value):
        raise HeaderError(f"its {keyword} is {value}, not a finite number")
    return value


def vector(ds, keyword: str, size: int) -> tuple[float, ...] | None:
    """Exactly ``size`` finite numbers of at most MAX_ABS_MM, or None when the element is absent, malformed or of
    another length (then the loader falls back, as for a missing tag: positions to instance order, spacing to 1 mm)."""
    raw = ds.get(keyword)
    if raw is None:
        return None
    values = raw if _several(raw) else [raw]
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        return None
    if len(out) != size or not all(math.isfinite(v) and abs(v) <= MAX_ABS_MM for v in out):
        return None
    return out


def orientation(value: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """An ImageOrientationPatient whose two directions are unit-ish and not parallel, else None."""
    if value is None:
        return None
    row, col = value[:3], value[3:]
    norm = lambda v: math.sqrt(sum(x * x for x in v))  # noqa: E731
    cross = (row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2], row[0] * col[1] - row[1] * col[0])
    if not (0.5 < norm(row) < 2 and 0.5 < norm(col) < 2 and norm(cross) > 0.25):
        return None
    return value


def spacing(value: tuple[float, ...] | None) -> tuple[float, float] | None:
    """PixelSpacing: two positive, plausible millimetre values, else None."""
    if value is None or not all(0.001 < v < 100 for v in value):
        return None
    return value


def image_problem(ds) -> str | None:
    """Why this image header cannot be decoded safely, or None: sizes, frames, bits, colour, rescale."""
    try:
        rows = integer(ds, "Rows", low=1, high=MAX_DIMENSION)
        columns = integer(ds, "Columns", low=1, high=MAX_DIMENSION)
        if rows is None or columns is None:
            return "no pixel data (no image size)"
        frames = integer(ds, "NumberOfFrames", 1, low=1, high=MAX_FRAMES)
        if rows * columns * frames > MAX_PIXELS:
            return f"too large: {frames} frame(s) of {rows}x{columns} pixels"
        bits = integer(ds, "BitsAllocated", 16)
        if bits not in BITS_ALLOCATED:
            return f"its BitsAllocated ({bits}) is not 8, 16 or 32"
        integer(ds, "BitsStored", bits, low=1, high=bits)
        integer(ds, "PixelRepresentation", 0, low=0, high=1)
        samples = integer(ds, "SamplesPerPixel", 1, low=1, high=4)
        photometric = str(first(ds.get("PhotometricInterpretation")) or "MONOCHROME2").strip().upper()
        if samples != 1 or photometric not in MONOCHROME:
            return f"a colour image ({photometric}), not a CT slice"
        rescale(ds)
        integer(ds, "PixelPaddingValue", None, low=-(2**31), high=2**32)
    except HeaderError as exc:
        return str(exc)
    return None


def rescale(ds) -> tuple[float, float]:
    """``(slope, intercept)``, finite and non-zero slope; :class:`HeaderError` otherwise."""
    slope, intercept = number(ds, "RescaleSlope", 1.0), number(ds, "RescaleIntercept", 0.0)
    if slope == 0 or abs(slope) > MAX_ABS_SLOPE or abs(intercept) > MAX_ABS_INTERCEPT:
        raise HeaderError(f"its rescale (slope {slope:g}, intercept {intercept:g}) cannot give Hounsfield units")
    return slope or 1.0, intercept
