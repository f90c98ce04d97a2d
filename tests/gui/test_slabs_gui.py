"""The window classifies a thin series as slabs when the model's card states a thicker slice, and shows
the thin slice with the slab's result (real CQ500-CT-0 slices, the bundled model with a 5 mm card)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import QSettings

import ich_viewer
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import IchModel
from ich_viewer.core.slabs import plan_for_series
from ich_viewer.core.volume import read_volume
from ich_viewer.gui.main_window import MainWindow
from tests.model_cards import bundled_with_card


@pytest.fixture(scope="module")
def thin_block(cq500_dir, tmp_path_factory):
    """Twelve consecutive real 0.618 mm slices of CQ500-CT-0."""
    root = tmp_path_factory.mktemp("thin")
    for f in ich_viewer.load(cq500_dir).series[0].files[110:122]:
        shutil.copy(f, root)
    return root


def test_the_window_classifies_a_thin_series_as_slabs(qtbot, tmp_path, thin_block):
    model = IchModel(bundled_with_card(tmp_path / "five.onnx", slice_thickness_mm=5.0))
    window = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), model=model)
    qtbot.addWidget(window)
    window.show()
    window.open_paths([thin_block])
    qtbot.waitUntil(lambda: window.viewer.prediction is not None and window.viewer.prediction.complete
                    and window.classify is None, timeout=30000)
    series = window.viewer.series
    volume, plan = read_volume(series), plan_for_series(series, 5.0)
    assert window.viewer.prediction.slabs is not None
    expected = predict_series(model, volume, slabs=plan).probabilities
    np.testing.assert_allclose(window.viewer.prediction.probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(window.view.image.image, volume[window.viewer.index])  # the thin slice shown
    window.viewer.go_to(0)
    assert "model fed 5 mm slabs (8.09 x 0.618 mm)" in window.view.corner.toPlainText()
    window.close()
