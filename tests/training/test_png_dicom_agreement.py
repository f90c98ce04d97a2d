"""The input every source can honestly give: a slice as full-range DICOM and as the brain-window PNG the
training sources were exported as gets the same probabilities from the bundled model (issue 14, item 3).

The graph clips HU to the range both PNG exports keep (-20..100) before anything else, and the training
cache resizes with the graph's own resize, so a PNG differs from its DICOM only by 8-bit quantisation
(0.47 HU a step) and, for a PHE-SICH-like export, a 2x2 area-average to 256 px before the model's resize.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import ich_viewer
from ich_viewer.core.model import IchModel
from ich_viewer.core.volume import read_volume
from training.data.cache import to_cache_size
from training.data.ctich import PNG_WINDOW, CtichPngSource, window_to_hu

REPO_MODELS = __import__("pathlib").Path(__file__).resolve().parents[2] / "resources" / "models"


def png_export(hu: np.ndarray, path, halve: bool) -> None:
    """What the dataset makers did: window 40/120 to 8 bits (PHE-SICH also 2x2 area-averaged to 256 px)."""
    level, width = PNG_WINDOW
    pixels = np.clip(np.round((hu - (level - width / 2)) / width * 255), 0, 255)
    if halve:
        pixels = np.round(pixels.reshape(pixels.shape[0] // 2, 2, pixels.shape[1] // 2, 2).mean((1, 3)))
    Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def real_slices(rsna_dir, cq500_dir):
    files = sorted(rsna_dir.rglob("*.dcm"))[:16]
    hu = [read_volume(ich_viewer.load(f).series[0])[0] for f in files]
    cq500 = ich_viewer.load(cq500_dir).series[0]
    volume = read_volume(cq500)
    hu += [volume[i] for i in (60, 120, 180)]
    return np.stack([h for h in hu if h.shape == (512, 512)]).astype(np.float32)


@pytest.mark.parametrize("halve", [False, True], ids=["ctich_like_512", "phe_sich_like_256"])
def test_the_same_slices_as_png_and_as_dicom_get_the_same_probabilities(real_slices, tmp_path, halve):
    model = IchModel.bundled(REPO_MODELS)
    size = model.card.input_size[0]
    from_dicom = model.run(real_slices[:, None]).probabilities
    as_png = []
    for i, hu in enumerate(real_slices):
        png_export(hu, tmp_path / f"{i}.png", halve)
        as_png.append(to_cache_size(window_to_hu(CtichPngSource._read_png(str(tmp_path / f"{i}.png")), PNG_WINDOW),
                                    size))
    from_png = model.run(np.stack(as_png).astype(np.float32)[:, None]).probabilities
    difference = np.abs(from_png - from_dicom)
    assert len(real_slices) >= 15
    assert difference.max() < (0.03 if not halve else 0.06), difference.max(0)
    assert np.median(difference) < 0.01
    # Without the graph's clip the two would disagree: a DICOM slice holds bone at 1,000+ HU and air at -1,000.
    assert real_slices.max() > 500 and real_slices.min() < -500
