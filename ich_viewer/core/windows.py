"""The one table of CT window presets, and linear / sigmoid windowing.

Every other module (viewer, model card, training) takes presets from here, so a window has one
definition in the whole product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

WindowFunction = Literal["linear", "sigmoid"]


@dataclass(frozen=True)
class Window:
    """A display window in Hounsfield units: ``center`` (level) and ``width``."""

    name: str
    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0

    def __str__(self) -> str:
        return f"{self.name} {self.center:g}/{self.width:g}"


#: Presets in the order of the viewer's number keys (1..6); the file's own window is key 7.
PRESETS: dict[str, Window] = {
    w.name: w
    for w in (
        Window("brain", 40, 80),
        Window("subdural", 80, 200),
        Window("blood", 75, 215),
        Window("bone", 600, 2800),
        Window("stroke", 40, 40),
        Window("soft tissue", 40, 400),
    )
}

#: The three windows of the seed papers' RGB composite (brain, subdural, bone).
COMPOSITE_WINDOWS: tuple[Window, Window, Window] = (
    PRESETS["brain"],
    PRESETS["subdural"],
    PRESETS["bone"],
)

#: Lee et al. 2018 map a window's edges to epsilon and 1 - epsilon of the output range; they use
#: U = 255 and epsilon = 1 on 8-bit output, i.e. 1/255 on our [0, 1] scale.
SIGMOID_EPSILON = 1.0 / 255.0


def preset(name: str) -> Window:
    """Return a preset by name; the error lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown window {name!r}; presets are: {', '.join(PRESETS)}") from None


def apply_linear(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map HU linearly to [0, 1]: ``center - width/2`` -> 0, ``center + width/2`` -> 1, clipped."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) * np.float32(1.0 / width)
    return np.clip(out, 0.0, 1.0)


def apply_sigmoid(
    hu: np.ndarray, center: float, width: float, epsilon: float = SIGMOID_EPSILON
) -> np.ndarray:
    """Sigmoid window of Lee et al. 2018 (Nat. Biomed. Eng.), on a [0, 1] output scale.

    ``1 / (1 + exp(-(2/width) * ln(1/epsilon - 1) * (hu - center)))``: the window's edges map to
    ``epsilon`` and ``1 - epsilon``, and values outside fade smoothly instead of clipping, which
    keeps a gradient there (why it helps learned windows).
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    slope = np.float32(2.0 / width * np.log(1.0 / epsilon - 1.0))
    x = (np.asarray(hu, dtype=np.float32) - np.float32(center)) * slope
    # 0.5 * (1 + tanh(x/2)) is the logistic function without overflow warnings for large |x|.
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32, copy=False)


def apply_window(
    hu: np.ndarray, window: Window, function: WindowFunction = "linear"
) -> np.ndarray:
    """Window ``hu`` with ``window`` using the named function; result float32 in [0, 1]."""
    if function == "linear":
        return apply_linear(hu, window.center, window.width)
    if function == "sigmoid":
        return apply_sigmoid(hu, window.center, window.width)
    raise ValueError(f"unknown window function {function!r}; use 'linear' or 'sigmoid'")


def composite_rgb(
    hu: np.ndarray,
    windows: Sequence[Window] = COMPOSITE_WINDOWS,
    function: WindowFunction = "linear",
) -> np.ndarray:
    """Stack three windows of ``hu`` ([..., H, W]) as channels: float32 [..., H, W, 3] in [0, 1].

    This is the three-window image the seed papers feed their networks (brain, subdural, bone),
    shown by the viewer's "model view".
    """
    if len(windows) != 3:
        raise ValueError(f"an RGB composite needs exactly 3 windows, got {len(windows)}")
    return np.stack([apply_window(hu, w, function) for w in windows], axis=-1)


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """Scale a [0, 1] windowed image to 8-bit for display or PNG export."""
    return np.round(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)
