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


def test_the_series_tree_names_the_flagged_classes_once_classified(qtbot, window, study):
    window.open_paths([study])
    qtbot.waitUntil(lambda: window.browser.topLevelItemCount() == 1, timeout=20000)
    item = window.browser.topLevelItem(0).child(0)
    name = item.text(0)
    classified(qtbot, window, study)
    item = window.browser.topLevelItem(0).child(0)
    flagged = window.viewer.flagged_classes()
    short = {"any": "any", "epidural": "EDH", "intraparenchymal": "IPH", "intraventricular": "IVH",
             "subarachnoid": "SAH", "subdural": "SDH"}
    assert item.text(0) == name + " \u2014 " + ("flagged: " + ", ".join(short[c] for c in flagged) if flagged
                                                else "nothing flagged")
    window.threshold_panel.apply_preset("high_sensitivity")  # more flags: the tree follows the thresholds
    flagged = window.viewer.flagged_classes()
    item = window.browser.topLevelItem(0).child(0)
    assert flagged and item.text(0) == name + " \u2014 flagged: " + ", ".join(short[c] for c in flagged)
    assert item.toolTip(0) == "Flagged: " + ", ".join(flagged)  # in full where there is room
    for c in CLASSES:
        window.viewer.set_threshold(c, 1.0)
    assert window.browser.topLevelItem(0).child(0).text(0) == name + " \u2014 nothing flagged"
    window.actions["anonymise"].trigger()  # the tree is redrawn: what it said stays
    assert window.browser.topLevelItem(0).child(0).text(0).endswith(" \u2014 nothing flagged")


def test_a_series_with_a_gap_shows_its_geometry_warning(qtbot, window, tmp_path):
    write_phantom_study(make_phantom(seed=6, subtypes=[], n_slices=8, size=64), tmp_path / "gap", patient_id="PAT-GAP")
    files = sorted((tmp_path / "gap").rglob("*.dcm"))
    files[4].unlink()  # a missing middle slice: a gap in the positions
    window.open_paths([tmp_path / "gap"])
    qtbot.waitUntil(lambda: window.viewer.series is not None, timeout=20000)
    assert window.viewer.series.geometry.gaps  # the loader saw it
    item = window.browser.topLevelItem(0).child(0)
    assert item.text(2) == "7 \u26a0"
    assert item.toolTip(0).startswith("Geometry: 1 gap(s) in slice positions") and item.toolTip(2) == item.toolTip(0)


def test_a_series_without_geometry_warnings_has_no_mark(qtbot, window, study):
    window.open_paths([study])
    qtbot.waitUntil(lambda: window.browser.topLevelItemCount() == 1, timeout=20000)
    item = window.browser.topLevelItem(0).child(0)
    assert item.text(2) == "8" and item.toolTip(0) == ""
