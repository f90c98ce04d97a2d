"""A flagged class whose Grad-CAM draws nothing on a slice says so, in the window and in both exports.

Found by an outside tester on the demo study with the bundled model: intraventricular flagged on a slice
whose heat map was empty, with no word why. Grad-CAM keeps only what raised the class's score, so this
happens with a real model; the test looks for such a slice rather than assuming which one it is."""

from __future__ import annotations

import numpy as np
import pytest

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.inference import CAM_BLANK_NOTE, CAM_VISIBLE, cam_blank
from ich_viewer.core.model import IchModel
from ich_viewer.core.viewer_model import TOP_CLASS
from ich_viewer.demo import demo_study_dir
from ich_viewer.paths import models_dir
from tests.gui.windows import new_window, opened

pytestmark = pytest.mark.gui


def test_cam_blank_means_nothing_reaches_one_colour_step():
    assert cam_blank(np.zeros((4, 4), np.float32)) and not cam_blank(None)
    assert cam_blank(np.full((4, 4), CAM_VISIBLE / 2, np.float32))
    assert not cam_blank(np.pad(np.full((1, 1), CAM_VISIBLE, np.float32), 2))


def test_the_window_and_exports_say_when_a_shown_grad_cam_is_blank(qtbot, tmp_path):
    window = new_window(qtbot, tmp_path / "settings.ini", IchModel.bundled(models_dir()))
    opened(qtbot, window, [demo_study_dir()])
    viewer, title = window.viewer, window.view.overlays.colour_bar.title
    shown = {}  # (slice, class) -> is its shown overlay blank?
    for index in range(len(viewer.series)):
        viewer.go_to(index)
        for name in CLASSES:
            viewer.set_cam(cls=name)
            values = viewer.overlay()
            if values is not None:
                shown[index, name] = cam_blank(values)
    blank = [key for key, is_blank in shown.items() if is_blank]
    drawn = [key for key, is_blank in shown.items() if not is_blank]
    assert blank and drawn, "the demo study no longer has both kinds of flagged slice"

    for (index, name), says_blank in ((blank[0], True), (drawn[0], False)):
        viewer.go_to(index)
        viewer.set_cam(cls=name)
        text = title.toPlainText()
        assert text.startswith(f"Grad-CAM: {name}\n")
        assert ("no positive evidence" in text) is says_blank and ("fixed scale" in text) is not says_blank
        lines = window.export_png(tmp_path / "slice.png")
        assert (f"Grad-CAM: {name} ({CAM_BLANK_NOTE})" in lines) is says_blank


def test_a_chosen_class_hidden_on_a_slice_says_so_instead_of_vanishing(qtbot, tmp_path, tiny_model):
    """Found by an outside tester: choosing "epidural" in the Grad-CAM list on a slice where it is not flagged
    removed the overlay and its colour bar without a word, as if the model had seen nothing."""
    from ich_viewer.core.phantom import make_phantom, write_phantom_study

    write_phantom_study(make_phantom(seed=2, subtypes=["epidural"], n_slices=4, size=64), tmp_path / "study")
    window = new_window(qtbot, tmp_path / "settings.ini", IchModel(tiny_model))
    opened(qtbot, window, [tmp_path / "study"])
    viewer, bar = window.viewer, window.view.overlays.colour_bar
    for name in CLASSES:
        viewer.set_threshold(name, 1.0)  # nothing flagged anywhere
    viewer.set_cam(cls="epidural")
    assert viewer.overlay() is None and not window.view.overlay.isVisible()
    assert bar.title.isVisible() and bar.title.toPlainText() == "Grad-CAM: epidural\nhidden: not flagged here"
    assert not bar.isVisible()  # no scale for a map that is not drawn
    viewer.set_cam(below_threshold=True)  # the user asks to see it after all
    assert window.view.overlay.isVisible() and bar.isVisible()
    assert bar.title.toPlainText().startswith("Grad-CAM: epidural\n") and "hidden" not in bar.title.toPlainText()
    viewer.set_cam(below_threshold=False, cls=TOP_CLASS)  # the default choice: nothing flagged, nothing said
    assert not bar.title.isVisible()
