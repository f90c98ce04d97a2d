"""Where the head is on a slice, from its Hounsfield units alone (no Qt, no model).

The Grad-CAM overlay is multiplied by this mask, so it never tints air, the scanner table, or the
padding outside the reconstructed field of view (RSNA slices store -2000 or -3024 there; the loader
turns it into air).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Soft tissue and bone are well above this; air, and the padding outside the field of view, below.
BODY_HU = -300.0
#: Openings of this many pixels cut thin links (a head holder, blankets, tubes) before the largest part is taken.
OPENING_PX = 2


def body_mask(hu: np.ndarray, threshold: float = BODY_HU, opening: int = OPENING_PX) -> np.ndarray:
    """bool [H, W]: the largest connected region above ``threshold`` HU, holes filled (sinuses, ventricles
    and a dark lesion inside the skull count as inside). All False when nothing is above the threshold."""
    hu = np.asarray(hu)
    above = hu > threshold  # NaN compares False: never body
    opened = ndimage.binary_opening(above, iterations=opening) if opening > 0 else above
    labels, count = ndimage.label(opened)
    if count == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(sizes.argmax())
    if opening > 0:  # the opening rounded its corners and thin edges (skin): give back what is within reach
        largest = ndimage.binary_dilation(largest, iterations=opening) & above
    return ndimage.binary_fill_holes(largest)
