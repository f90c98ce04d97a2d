"""Calibrating to a site: the model over studies known to be normal, then a site preset from their slices.

Driven through the same :class:`~ich_viewer.core.viewer_model.ViewerModel` as triage and the window (the
same loader, intended-use check and slab plan), so the probabilities the thresholds are chosen on are the
ones the viewer and triage will compare with them. Series outside the intended use (contrast, not a head,
bone reconstruction) are left out: they are never flagged anyway. No Qt: the CLI runs :func:`calibrate`
in the foreground, the window in a worker.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np

from ich_viewer.core import intended_use, site_presets
from ich_viewer.core.dicom_io import load
from ich_viewer.core.errors import CalibrationError
from ich_viewer.core.inference import predict_series
from ich_viewer.core.model import IchModel
from ich_viewer.core.viewer_model import ViewerModel


def calibrate(paths: list[Path], model: IchModel, max_flag_rate: float = site_presets.DEFAULT_MAX_FLAG_RATE,
              name: str = site_presets.DEFAULT_NAME, on_slices: Callable[[int, int], None] | None = None,
              cancel: threading.Event | None = None) -> tuple[site_presets.SitePreset, int]:
    """The site preset for the normal studies under ``paths``, and how many series were left out as outside
    the intended use. ``on_slices(done, total)`` reports progress. CalibrationError (one sentence) for too
    few slices or studies, checked on the headers before any inference and again after decoding; a bad
    rate or name; or a cancelled run. Nothing is saved here (:func:`site_presets.save` does that)."""
    card = model.card
    site_presets.check_name(name, card.presets)
    site_presets.check_flag_rate(max_flag_rate)  # before the minutes of inference, not after
    viewer = ViewerModel()
    viewer.set_model(model)
    viewer.set_result(load(paths))
    usable = [(study, series) for study in viewer.result.studies for series in study.series
              if not intended_use.check(series, study.description).outside]
    outside = len(viewer.result.series) - len(usable)
    total = sum(len(series) for _, series in usable)
    site_presets.refuse_small(total, len({study.uid for study, _ in usable}))  # before minutes of inference
    rows, studies, done = [], set(), 0
    for study, series in usable:
        viewer.open_series(study, series)

        def progress(batch) -> None:
            nonlocal done
            done += len(batch.indices)
            if on_slices is not None:
                on_slices(done, total)

        prediction = predict_series(model, viewer.loader, len(series), slabs=viewer.slab_plan(), cancel=cancel,
                                    on_batch=progress)
        viewer.close_series()
        if prediction.cancelled:
            raise CalibrationError("Calibration cancelled: nothing was saved.")
        if prediction.done.any():
            rows.append(prediction.probabilities[prediction.done])
            studies.add(study.uid)
    probabilities = np.concatenate(rows) if rows else np.zeros((0, 6), np.float32)
    floor_preset = card.default_preset
    preset = site_presets.make_preset(probabilities, len(studies), max_flag_rate, name, floor_preset,
                                      card.presets[floor_preset])
    return preset, outside
