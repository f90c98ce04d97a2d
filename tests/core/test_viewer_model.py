"""The viewer model without Qt: open a real (phantom) study, stream a prediction, move thresholds, ask
what the window asks, export; and the events a widget would follow."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ich_viewer
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.inference import flagged_ranges, predict_series
from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.core.viewer_model import TOP_CLASS, ViewerModel, next_run_start
from ich_viewer.core.windows import PRESETS


@pytest.fixture
def viewer(tmp_path, tiny_model):
    write_phantom_study(make_phantom(seed=4, subtypes=["subdural"], n_slices=10, size=64), tmp_path / "study",
                        patient_id="PAT-VM")
    viewer = ViewerModel()
    viewer.set_model(IchModel(tiny_model))
    viewer.set_result(ich_viewer.load(tmp_path / "study"))
    yield viewer
    viewer.close_series()


def _record(viewer: ViewerModel) -> list[tuple]:
    seen = []
    for name in ("series_opened", "slice_changed", "thresholds_changed", "prediction_changed", "window_changed",
                 "cam_changed", "anonymised_changed"):
        getattr(viewer, name).connect(lambda *args, n=name: seen.append((n, *args)))
    return seen


def test_a_streamed_prediction_answers_the_windows_questions(viewer):
    seen = _record(viewer)
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    assert viewer.index == 5 and seen[0][0] == "series_opened" and viewer.slice_flags() is None
    assert viewer.go_to_worst("subdural") is None and viewer.index == 5  # nothing classified: stay
    batches = []
    final = predict_series(viewer.model, viewer.loader, 10, batch_size=4,
                           on_batch=lambda batch: (viewer.add_batch(batch), batches.append(viewer.prediction.done.sum())))
    assert batches == [4, 8, 10]  # the prediction grew batch by batch, as the window shows it
    first = next(e[1] for e in seen if e[0] == "prediction_changed" and e[1] is not None)
    assert first.indices.tolist() == [3, 4, 5, 6]  # the middle slices first: the window opens there
    viewer.finish_prediction(final)
    p = viewer.prediction.probabilities
    np.testing.assert_allclose(viewer.maxima(), p.max(0))
    viewer.apply_preset("high_sensitivity")  # every class at 0.2
    flags = p >= 0.2
    np.testing.assert_array_equal(viewer.slice_flags(), flags)
    assert viewer.flagged_classes() == [c for c, f in zip(CLASSES, flags.any(0)) if f]
    assert viewer.worst_slice("subdural") == int(p[:, 5].argmax())
    assert viewer.go_to_worst("subdural") == int(p[:, 5].argmax()) == viewer.index
    viewer.go_to(5)
    starts = [a for a, _ in flagged_ranges(flags.any(1))]  # N / Shift+N step between runs, not slices
    assert viewer.next_flagged(+1) == next((a for a in starts if a > 5), None)
    assert viewer.next_flagged(-1) == next((a for a in starts[::-1] if a < 5), None)
    viewer.set_threshold("any", 1.0)
    assert viewer.thresholds.preset == "custom" and not viewer.slice_flags()[:, 0].any()
    assert viewer.flagged_ranges("any") == []
    assert sum(e[0] == "thresholds_changed" for e in seen) == 2


def test_next_and_previous_flagged_run_land_on_run_starts():
    flags = np.array([0, 1, 1, 1, 0, 0, 1, 0, 1, 1], bool)  # runs 1-3, 6, 8-9
    assert [next_run_start(flags, i, +1) for i in range(10)] == [1, 6, 6, 6, 6, 6, 8, 8, None, None]
    # backwards from inside a run goes to its start first, then to the run before
    assert [next_run_start(flags, i, -1) for i in range(10)] == [None, None, 1, 1, 1, 1, 1, 6, 6, 8]
    assert next_run_start(np.zeros(5, bool), 2, +1) is None and next_run_start(np.zeros(0, bool), 0, -1) is None


def test_slices_the_cam_class_and_the_overlay(viewer):
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    assert viewer.cam_class_index() is None and viewer.overlay() is None  # nothing classified yet
    viewer.finish_prediction(predict_series(viewer.model, viewer.loader, 10))
    viewer.apply_preset("high_sensitivity")  # 0.2: several classes flag on this slice
    p, flags = viewer.prediction.probabilities[5], viewer.slice_flags()[5]
    assert flags.any() and viewer.cam_class == TOP_CLASS
    assert viewer.cam_class_index() == int(np.argmax(np.where(flags, p, -1)))  # the most probable FLAGGED class
    viewer.set_cam(cls="subdural", below_threshold=True)
    overlay = viewer.overlay()
    assert viewer.cam_class_index() == 5 and overlay.shape == (64, 64) and 0 <= overlay.min() <= overlay.max() <= 1
    viewer.set_cam(enabled=False)
    assert viewer.overlay() is None
    viewer.go_to(99)
    assert viewer.index == 9 and "slice 10/10" in viewer.corner_lines()[-1]
    viewer.set_window(PRESETS["bone"])
    assert "bone" in viewer.corner_lines()[-1] and "PAT-VM" in viewer.corner_lines()[0]
    viewer.set_anonymised(True)
    assert "PAT-VM" not in "".join(viewer.corner_lines())


def test_the_export_is_triages_format(viewer, tmp_path):
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    viewer.finish_prediction(predict_series(viewer.model, viewer.loader, 10))
    viewer.set_anonymised(True)
    viewer.export_results(tmp_path / "r.csv", tmp_path / "r.json")
    payload = json.loads((tmp_path / "r.json").read_text())
    assert list(payload) == ["model", "preset", "thresholds", "not_flagged", "studies", "files_found",
                             "series_found", "skipped", "other_files", "notice"]
    # the open series is exported; how many series were open is said (an outside tester read one study of two
    # with "files_found": 2 as the whole of what was open)
    assert len(payload["studies"]) == 1 and payload["series_found"] == len(viewer.result.series)
    assert payload["studies"][0]["patient"] is None and "PAT-VM" not in (tmp_path / "r.csv").read_text()
    series = payload["studies"][0]["series"][0]
    assert series["complete"] and series["flagged_classes"] == viewer.flagged_classes()
    assert payload["skipped"] == [] and payload["other_files"] == 1  # the phantom's labels.csv, not a broken file


def test_a_preset_the_card_lacks_is_refused(tiny_model):
    with pytest.raises(ValueError, match="unknown preset"):
        ViewerModel().set_model(IchModel(tiny_model), "foo")


def test_the_default_cam_is_the_top_flagged_class_or_none(viewer):
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    viewer.finish_prediction(predict_series(viewer.model, viewer.loader, 10))
    for name in CLASSES:
        viewer.set_threshold(name, 1.0)  # nothing flags anywhere
    assert not viewer.slice_flags()[5].any()
    assert viewer.cam_class_index() is None and viewer.overlay() is None  # no heat map on a slice not flagged
    viewer.set_cam(below_threshold=True)  # asked for: the slice's most probable class, under its threshold
    assert viewer.cam_class_index() == int(np.argmax(viewer.prediction.probabilities[5]))
    p = viewer.prediction.probabilities[5]
    second = int(np.argsort(p)[-2])
    viewer.set_cam(below_threshold=False)
    viewer.set_threshold(CLASSES[second], float(p[second]) - 0.01)  # only the second most probable flags
    assert viewer.cam_class_index() == second


def test_the_overlay_is_zero_outside_the_head(viewer):
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    viewer.finish_prediction(predict_series(viewer.model, viewer.loader, 10))
    viewer.set_cam(cls="any", below_threshold=True)
    viewer.prediction.cam[5, 0] = 1.0  # a map that lights up everything, the square around the head too
    overlay, hu = viewer.overlay(), viewer.loader.slice(5)
    mask = viewer.body_mask()
    assert mask.shape == hu.shape and mask.any() and not mask.all()
    assert (overlay[~mask] == 0).all() and (overlay[mask] > 0).all()
    assert not mask[hu < -900].all() and (overlay[0, :] == 0).all()  # the air at the top edge stays clear


def test_sigmoid_windowing_is_the_viewers_choice(viewer):
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    seen = _record(viewer)
    viewer.set_window_function("sigmoid")
    assert viewer.window_function == "sigmoid" and ("window_changed",) in seen
    assert "brain 40/80 sigmoid" in viewer.corner_lines()[-1]
    viewer.set_window_function("linear")
    assert "sigmoid" not in viewer.corner_lines()[-1]
    with pytest.raises(ValueError, match="linear"):
        viewer.set_window_function("cubic")


def test_orientation_markers_follow_the_series(viewer):
    assert viewer.orientation_markers() is None  # nothing open
    study = viewer.result.studies[0]
    viewer.open_series(study, study.series[0])
    assert viewer.orientation_markers() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_the_files_own_window_follows_each_series_opened(tmp_path):
    """Found by an outside tester: key 7 on a series storing 50/350, then another series storing 40/80, and
    the corner still said "file 50/350"."""
    import pydicom

    for name, (center, width) in {"a": (50, 350), "b": (40, 80), "c": (None, None)}.items():
        write_phantom_study(make_phantom(seed=1, subtypes=[], n_slices=2, size=64), tmp_path / name,
                            patient_id=f"PAT-{name}")
        for path in (tmp_path / name).glob("*.dcm"):
            ds = pydicom.dcmread(path)
            if center is None:
                del ds.WindowCenter, ds.WindowWidth
            else:
                ds.WindowCenter, ds.WindowWidth = center, width
            ds.save_as(path)
    viewer = ViewerModel()
    shown = []
    for name in "abc":
        result = ich_viewer.load(tmp_path / name)
        viewer.open_series(result.studies[0], result.series[0])
        if name == "a":
            viewer.set_window(viewer.series.file_window)
        shown.append((viewer.window.name, viewer.window.center, viewer.window.width))
        viewer.close_series()
    assert shown == [("file", 50, 350), ("file", 40, 80), ("brain", PRESETS["brain"].center, PRESETS["brain"].width)]
