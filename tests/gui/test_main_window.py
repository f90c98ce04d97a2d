"""The minimal window on real widgets (offscreen): it opens a study and reports bad input."""

from __future__ import annotations

import numpy as np

from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.gui import main_window
from ich_viewer.gui.main_window import NOT_FOR_DIAGNOSIS, MainWindow


def test_opens_a_phantom_study_and_scrolls(qtbot, tmp_path):
    write_phantom_study(make_phantom(seed=2, n_slices=8, size=128), tmp_path / "study")
    (tmp_path / "study" / "notes.txt").write_text("not dicom")
    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_paths([tmp_path / "study"])
    qtbot.waitUntil(lambda: window._loader.finished and "8/8" in window.info.text(), timeout=10000)
    assert window.slider.maximum() == 7 and window.slider.value() == 4
    shown = window.image.image
    np.testing.assert_array_equal(shown, window.series.volume()[4])
    window.slider.setValue(1)
    np.testing.assert_array_equal(window.image.image, window.series.volume()[1])
    assert "notes.txt: not a DICOM file" in window.info.text()
    assert "labels.csv" in window.info.text()
    texts = [w.text() for w in window.statusBar().findChildren(main_window.QLabel)]
    assert NOT_FOR_DIAGNOSIS in texts


def test_nothing_usable_is_a_message_not_a_traceback(qtbot, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(main_window.QMessageBox, "warning", lambda parent, title, text: shown.append(text))
    window = MainWindow()
    qtbot.addWidget(window)
    assert not window.open_paths([tmp_path])
    assert shown and "No CT images found" in shown[0]
