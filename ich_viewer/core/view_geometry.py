"""What the slice view draws around the image, computed without Qt: orientation markers and a scale bar.

The view shows a slice with its first row at the top and its first column at the left, so the screen's
rightward direction is the image's row direction (ImageOrientationPatient's first three values) and its
downward direction the column direction (the last three). DICOM's patient axes are LPS: +x towards the
patient's left, +y posterior, +z head.
"""

from __future__ import annotations

import math
from typing import Sequence

#: (letter for +, letter for -) along the patient axes x, y, z.
AXIS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))
#: A direction also names an axis whose cosine is at least this (about 17 degrees off the main axis),
#: so a tilted gantry shows as "PF", never as a plain "P" that hides the tilt.
OBLIQUE_COSINE = 0.3
#: Lengths a scale bar may have: 1, 2 and 5 times a power of ten (mm).
NICE_STEPS = (1.0, 2.0, 5.0)


def direction_letters(vector: Sequence[float], oblique: float = OBLIQUE_COSINE) -> str:
    """The patient direction a vector points to: "L", "A", ..., or e.g. "PF" when oblique, strongest first."""
    x, y, z = (float(v) for v in vector)
    norm = math.sqrt(x * x + y * y + z * z)
    if not norm > 0:
        return ""
    parts = sorted(((abs(c) / norm, letters[0] if c > 0 else letters[1])
                    for c, letters in zip((x, y, z), AXIS_LETTERS)), reverse=True)
    return parts[0][1] + "".join(letter for size, letter in parts[1:] if size >= oblique)


def opposite(letters: str) -> str:
    swap = {a: b for plus, minus in AXIS_LETTERS for a, b in ((plus, minus), (minus, plus))}
    return "".join(swap[c] for c in letters)


def orientation_markers(orientation: Sequence[float] | None) -> dict[str, str] | None:
    """The patient direction at each edge of the view ({"left", "right", "top", "bottom"}), or None
    when the series has no usable ImageOrientationPatient (then no markers: a guess would mislead)."""
    if orientation is None or len(orientation) != 6:
        return None
    right, down = direction_letters(orientation[:3]), direction_letters(orientation[3:])
    if not right or not down:
        return None
    return {"left": opposite(right), "right": right, "top": opposite(down), "bottom": down}


def scale_bar(mm_per_screen_pixel: float, view_width_px: float, fraction: float = 0.2) -> tuple[float, float] | None:
    """(length in mm, length in screen pixels) of a bar of a round length (1, 2 or 5 x 10^n mm), the longest
    that fits in ``fraction`` of the view's width; None when there is nothing to measure."""
    if not (mm_per_screen_pixel > 0 and view_width_px > 0 and math.isfinite(mm_per_screen_pixel)):
        return None
    target_mm = fraction * view_width_px * mm_per_screen_pixel
    power = 10.0 ** math.floor(math.log10(target_mm))
    length = max(step * power for step in NICE_STEPS if step * power <= target_mm * (1 + 1e-9))
    return length, length / mm_per_screen_pixel


def scale_label(length_mm: float) -> str:
    """ "50 mm", "1 cm" is not used: radiologists measure in mm; "0.5 mm" below one."""
    return f"{length_mm:g} mm"
