"""Study-level triage in the window, through real widgets: the class table's rows go to each class's worst
slice; the series tree names each series' flagged classes and its geometry warnings."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.gui.main_window import MainWindow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("triage_gui")
    write_phantom_study(make_phantom(seed=3, subtypes=["subdural"], n_slices=8, size=96), root / "study",
                        patient_id="PAT-TRI")
    return root / "study"


@pytest.fixture
def window(qtbot, tmp_path, tiny_model):
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                   model=IchModel(tiny_model))
    qtbot.addWidget(w)
    w.show()
    return w


def classified(qtbot, window, path):
    window.open_paths([path])
    qtbot.waitUntil(lambda: window.viewer.prediction is not None and window.viewer.prediction.complete
                    and window.classify is None, timeout=30000)
    return window


def test_clicking_a_class_row_goes_to_its_worst_slice(qtbot, window, study):
    classified(qtbot, window, study)
    probabilities = window.viewer.prediction.probabilities
    table = window.classes
    for row, name in enumerate(CLASSES):
        worst = int(np.argmax(probabilities[:, row]))
        window.viewer.go_to(0 if worst else len(window.viewer.series) - 1)  # start away from it
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                         pos=table.visualItemRect(table.item(row, 0)).center())
        assert window.viewer.index == worst, name
        assert window.slider.value() == worst  # the window followed, not just the model
    assert window.classes.item(CLASSES.index("subdural"), 2).text() == f"{probabilities[:, 5].max():.2f}"
