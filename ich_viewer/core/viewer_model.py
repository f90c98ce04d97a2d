"""The viewer's state and its rules, without Qt: what the window shows and triage writes come from here.

In napari's shape: a plain object that owns the state and emits an event (psygnal) when a part of it
changes; each widget subscribes to the events it shows, as napari's ``QtDims`` subscribes to
``dims.events``. It owns the load result, the open series and its loader, the model, thresholds and
active preset, the prediction as it accumulates batch by batch, the current slice, the window and the
Grad-CAM class, and answers the questions a reader asks (flags, maxima, flagged ranges, next flagged
slice, worst slice per class, the export). ``ich-viewer triage`` drives the same object headlessly, so
its CSV and JSON and the window's export cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from psygnal import Signal

from ich_viewer.core import intended_use
from ich_viewer.core.body_mask import body_mask
from ich_viewer.core.contract import CLASSES, BatchResult
from ich_viewer.core.inference import SeriesPrediction, cam_overlay, display_scale, flagged_ranges
from ich_viewer.core.model import IchModel
from ich_viewer.core.results import SeriesResult, results_payload, slice_rows, write_csv, write_json
from ich_viewer.core.series import LoadResult, Series, Study
from ich_viewer.core.slabs import SlabPlan, plan_for_series
from ich_viewer.core.thresholds import Thresholds
from ich_viewer.core.volume import VolumeLoader
from ich_viewer.core.view_geometry import orientation_markers
from ich_viewer.core.windows import COMPOSITE_WINDOWS, PRESETS, Window, WindowFunction

#: The Grad-CAM class choice that follows the current slice: its most probable flagged class, or no
#: overlay when nothing is flagged there (the most probable class of a normal slice washes the whole head).
TOP_CLASS = "top flagged class"


def next_run_start(flags: np.ndarray, index: int, direction: int) -> int | None:
    """The start of the nearest run of ``flags`` (bool per slice) that starts after ``index`` (``direction`` > 0)
    or before it; None when there is none."""
    starts = np.array([a for a, _ in flagged_ranges(flags)], int)
    ahead = starts[starts > index] if direction > 0 else starts[starts < index][::-1]
    return int(ahead[0]) if len(ahead) else None


class ViewerModel:
    # Events: each says what changed; the new state is read from the model.
    loaded = Signal(object)  # LoadResult
    series_opened = Signal(object, object)  # Study, Series
    slice_changed = Signal(int)
    model_changed = Signal(object)  # IchModel
    thresholds_changed = Signal()
    prediction_changed = Signal(object)  # the BatchResult that arrived, or None (started, finished, cleared)
    window_changed = Signal()  # the window, or the model view
    cam_changed = Signal()  # the Grad-CAM class or options
    anonymised_changed = Signal(bool)

    def __init__(self) -> None:
        self.result: LoadResult | None = None
        self.study: Study | None = None
        self.series: Series | None = None
        self.loader: VolumeLoader | None = None
        self.model: IchModel | None = None
        self.thresholds: Thresholds | None = None
        self.prediction: SeriesPrediction | None = None
        self.index = 0
        self.window: Window = PRESETS["brain"]
        self.composite: tuple[Window, ...] | None = None  # the model view's three windows, when shown
        self.window_function: WindowFunction = "linear"  # or "sigmoid" (core/windows.py)
        self.cam_class = TOP_CLASS
        self.cam_enabled, self.cam_below_threshold = True, False
        self.anonymised = False
        self.use_check = intended_use.UseCheck()  # the open series' intended-use verdict
        self.flag_outside_use = False  # the user asked to see flags on a series outside the intended use
        self._slabs: tuple = (None, None, None)  # series, model, and the slab plan for them
        self._mask: tuple = (None, None, None)  # loader, slice index, and that slice's body mask

    # ------------------------------------------------------------------ loading and navigation

    def set_result(self, result: LoadResult) -> None:
        self.result = result
        self.loaded.emit(result)

    def open_series(self, study: Study, series: Series, first: int | None = None) -> None:
        """Make ``series`` current and start decoding it (``first``, default the middle slice, first)."""
        self.close_series()
        self.study, self.series, self.prediction = study, series, None
        own_window = self.window.name == "file"  # "the file's own window": this series' own, or brain without one
        if own_window:
            self.window = series.file_window or PRESETS["brain"]
        self.use_check = intended_use.check(series, study.description)
        self.index = len(series) // 2 if first is None else int(np.clip(first, 0, len(series) - 1))
        # Our own loader: its decoding threads stop and its array goes when the next series opens.
        self.loader = VolumeLoader(series, first=self.index)
        self.series_opened.emit(study, series)
        if own_window:
            self.window_changed.emit()

    def close_series(self) -> None:
        if self.loader is not None:
            self.loader.cancel()
        self.loader = None

    def go_to(self, index: int) -> None:
        if self.series is None:
            return
        index = int(np.clip(index, 0, len(self.series) - 1))
        if index != self.index:
            self.index = index
            self.slice_changed.emit(index)

    # ------------------------------------------------------------------ model, thresholds, prediction

    def set_model(self, model: IchModel, preset: str | None = None, site_presets=()) -> None:
        """``site_presets``: this model's presets from the user's settings (core/site_presets.py), shown after
        the card's. Raises ValueError for a preset neither has."""
        self.model, self.thresholds, self.prediction = model, Thresholds(model.card, preset, site_presets), None
        self.model_changed.emit(model)
        self.thresholds_changed.emit()

    def apply_preset(self, name: str) -> None:
        self.thresholds.apply_preset(name)
        self.thresholds_changed.emit()

    def set_threshold(self, name: str, value: float) -> None:
        self.thresholds.set(name, value)
        self.thresholds_changed.emit()

    def set_class_enabled(self, name: str, enabled: bool) -> None:
        """Flag a class the card marks not calibrated after all, or stop flagging one."""
        self.thresholds.set_enabled(name, enabled)
        self.thresholds_changed.emit()

    def set_flag_outside_use(self, flag: bool) -> None:
        """Flag a series outside the model's intended use all the same (off by default: it is not flagged)."""
        self.flag_outside_use = flag
        self.thresholds_changed.emit()  # the flags change as if every threshold had

    @property
    def flags_shown(self) -> bool:
        """False for a series outside the intended use, unless the user asked: then nothing is flagged."""
        return not self.use_check.outside or self.flag_outside_use

    def slab_plan(self) -> SlabPlan | None:
        """How the open series is fed to the model: as slabs of the card's slice thickness when the series is
        clearly thinner (the GUI and triage both classify with this), else None (slice by slice)."""
        if self.model is None or self.series is None:
            return None
        if self._slabs[:2] != (self.series, self.model):  # kept: the corner text asks on every window drag
            self._slabs = (self.series, self.model, plan_for_series(self.series, self.model.card.slice_thickness_mm))
        return self._slabs[2]

    def start_prediction(self) -> None:
        self.prediction = SeriesPrediction.empty(len(self.series))
        self.prediction.slabs = self.slab_plan()  # what the run feeds, also when it is cancelled half-way
        self.prediction_changed.emit(None)

    def add_batch(self, batch: BatchResult) -> None:
        if self.prediction is None:
            self.start_prediction()
        self.prediction.add(batch)
        self.prediction_changed.emit(batch)

    def finish_prediction(self, prediction: SeriesPrediction) -> None:
        """The run's own result (with its unreadable slices); a cancelled run keeps what had arrived."""
        if not prediction.cancelled:
            self.prediction = prediction
        self.prediction_changed.emit(None)

    # ------------------------------------------------------------------ questions

    def slice_flags(self) -> np.ndarray | None:
        """bool [Z, 6]: each slice's flags at the active thresholds (never for a slice not yet classified)."""
        if self.prediction is None or self.thresholds is None:
            return None
        flags = self.thresholds.flags(self.prediction.probabilities)
        return flags if self.flags_shown else np.zeros_like(flags)

    def study_flags(self) -> np.ndarray:
        """bool [6]: flagged on any slice of the series."""
        flags = self.slice_flags()
        return np.zeros(len(CLASSES), bool) if flags is None else flags.any(0)

    def flagged_classes(self) -> list[str]:
        return [c for c, flagged in zip(CLASSES, self.study_flags()) if flagged]

    def maxima(self) -> np.ndarray | None:
        """float [6]: the highest probability of each class over the slices classified so far."""
        if self.prediction is None or not self.prediction.done.any():
            return None
        return self.prediction.probabilities[self.prediction.done].max(0)

    def flagged_ranges(self, name: str) -> list[tuple[int, int]]:
        flags = self.slice_flags()
        return [] if flags is None else flagged_ranges(flags[:, CLASSES.index(name)])

    def worst_slice(self, name: str) -> int | None:
        """The slice where ``name`` is most probable, among those classified."""
        if self.prediction is None or not self.prediction.done.any():
            return None
        return int(np.nanargmax(np.where(self.prediction.done, self.prediction.probabilities[:, CLASSES.index(name)],
                                         np.nan)))

    def go_to_worst(self, name: str) -> int | None:
        """Go to the slice where ``name`` is most probable (the class table's row); None before any is classified."""
        worst = self.worst_slice(name)
        if worst is not None:
            self.go_to(worst)
        return worst

    def next_flagged(self, direction: int) -> int | None:
        """The first slice of the next run of consecutive flagged slices (any class) after the current slice
        (``direction`` > 0), or of the run before it: inside a run, backwards goes to that run's start first."""
        flags = self.slice_flags()
        if flags is None:
            return None
        return next_run_start(flags.any(1), self.index, direction)

    def cam_class_index(self) -> int | None:
        """The class whose Grad-CAM the current slice shows; None until the slice is classified.

        By default (:data:`TOP_CLASS`) the slice's most probable flagged class, and None when nothing is
        flagged there, unless the user asked to see the heat map under the threshold: then its most
        probable class.
        """
        if self.prediction is None or not self.prediction.done[self.index]:
            return None
        if self.cam_class != TOP_CLASS:
            return CLASSES.index(self.cam_class)
        probabilities = self.prediction.probabilities[self.index]
        flags = self.slice_flags()
        flagged = np.flatnonzero(flags[self.index]) if flags is not None else np.array([], int)
        if len(flagged):
            return int(flagged[np.argmax(probabilities[flagged])])
        return int(np.argmax(probabilities)) if self.cam_below_threshold else None

    def body_mask(self) -> np.ndarray | None:
        """bool [H, W]: the head on the current slice (core/body_mask.py), or None before it is decoded."""
        if self.loader is None or not self.loader.ready[self.index]:
            return None
        if self._mask[:2] != (self.loader, self.index):  # kept: a threshold drag asks on every move
            self._mask = (self.loader, self.index, body_mask(self.loader.slice(self.index)))
        return self._mask[2]

    def overlay(self) -> np.ndarray | None:
        """The current slice's Grad-CAM as [H, W] values in [0, 1], or None when none is to be shown.

        Zero outside the head (:meth:`body_mask`): the network's coarse map spills over the skull into
        air and the padding outside the field of view, where it means nothing.
        """
        c = self.cam_class_index()
        mask = self.body_mask() if self.cam_enabled and c is not None else None
        if mask is None or self.series is None:
            return None
        name = CLASSES[c]
        scale = display_scale(self.prediction, c, self.model.card.cam_scale[name])
        # Outside the intended use nothing is flagged, so the heat map is as under the threshold.
        threshold = float(self.thresholds.as_array()[c]) if self.flags_shown else np.inf
        values = cam_overlay(self.prediction.cam[self.index, c], (self.series.rows, self.series.columns), scale,
                             float(self.prediction.probabilities[self.index, c]), threshold, self.cam_below_threshold)
        return None if values is None else values * mask

    def cam_hidden_note(self, shown: np.ndarray | None) -> str | None:
        """Why the class the user chose shows no Grad-CAM on this slice (it hides under the threshold), or None
        when the map shows, is switched off, or follows the default choice: a chosen class that vanished without
        a word read as "the model saw nothing". ``shown``: what :meth:`overlay` gave for this slice (the caller
        has it; computing it again doubled the work of every slice change)."""
        if shown is not None or self.cam_class == TOP_CLASS or not self.cam_enabled or self.cam_class_index() is None:
            return None
        return "hidden: " + ("outside intended use" if not self.flags_shown else "not flagged here")

    def orientation_markers(self) -> dict[str, str] | None:
        """The patient direction at each edge of the view, from the open series' ImageOrientationPatient."""
        return None if self.series is None else orientation_markers(self.series.orientation)

    def corner_lines(self) -> list[str]:
        """The overlay text: patient (unless anonymised), slice, position and window."""
        if self.series is None:
            return []
        lines = []
        if not self.anonymised and self.study is not None:
            patient = self.study.patient
            lines.append(f"{patient.name or '(no name)'}  ID {patient.id or '-'}  {self.study.date or ''}")
        window = "model view" if self.composite else str(self.window)
        if self.window_function != "linear":
            window += f" {self.window_function}"
        z = f"z {self.series.z[self.index]:.1f} mm" if self.series.positions_known else "z not stated"
        lines.append(f"slice {self.index + 1}/{len(self.series)}  {z}  {window}")
        if not self.series.pixel_spacing_known:
            lines.append("pixel spacing not stated: no scale")
        slabs = self.slab_plan()
        if slabs is not None:  # the result shown is the slab's around this slice, not the thin slice's alone
            lines.append(f"model fed {slabs.thickness_mm:g} mm slabs ({slabs.slices_per_slab:.3g} x {slabs.spacing_mm:.3g} mm)")
        if self.use_check.outside:  # short: the overlay is as wide as the image
            lines.append(f"OUTSIDE INTENDED USE ({', '.join(self.use_check.reasons)})"
                         + ("" if self.flag_outside_use else ": NOT FLAGGED"))
        return lines

    # ------------------------------------------------------------------ display choices

    def set_window(self, window: Window) -> None:
        self.window, self.composite = window, None
        self.window_changed.emit()

    def set_window_function(self, function: WindowFunction) -> None:
        """Linear (clipped) or sigmoid windowing (core/windows.py), for the window and the model view alike."""
        if function not in ("linear", "sigmoid"):
            raise ValueError(f"unknown window function {function!r}; use 'linear' or 'sigmoid'")
        self.window_function = function
        self.window_changed.emit()

    def model_view_windows(self) -> tuple[Window, ...]:
        """The model's own three windows when its card names them, else the seed papers' composite."""
        return self.model.card.windows if self.model is not None and len(self.model.card.windows) == 3 \
            else COMPOSITE_WINDOWS

    def show_model_view(self) -> None:
        self.composite = self.model_view_windows()
        self.window_changed.emit()

    def set_cam(self, *, cls: str | None = None, enabled: bool | None = None, below_threshold: bool | None = None) -> None:
        if cls is not None:
            self.cam_class = cls
        if enabled is not None:
            self.cam_enabled = enabled
        if below_threshold is not None:
            self.cam_below_threshold = below_threshold
        self.cam_changed.emit()

    def set_anonymised(self, anonymised: bool) -> None:
        self.anonymised = anonymised
        self.anonymised_changed.emit(anonymised)

    # ------------------------------------------------------------------ results

    def series_result(self) -> SeriesResult:
        return SeriesResult(self.study, self.series, self.prediction, self.use_check, self.flags_shown)

    def rows(self, results: list[SeriesResult] | None = None) -> list[dict]:
        """The per-slice CSV rows of ``results`` (default: the open series); anonymised when the display is."""
        return slice_rows(results or [self.series_result()], self.thresholds.as_array(), self.anonymised)

    def payload(self, results: list[SeriesResult] | None = None) -> dict:
        """The JSON summary of ``results`` (default: the open series), in the one format triage writes."""
        return results_payload(self.model, self.thresholds, results or [self.series_result()], self.result,
                               self.anonymised)

    def export_results(self, csv_path: Path, json_path: Path, results: list[SeriesResult] | None = None) -> None:
        write_csv(csv_path, self.rows(results))
        write_json(json_path, self.payload(results))
