"""Running a model over a series: batches as slices become available, streamed results, summaries.

No Qt: the GUI runs :func:`predict_series` in a worker and forwards ``on_batch`` to the widgets;
``ich-viewer triage`` runs the same function in the foreground.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from skimage.transform import resize

from ich_viewer.core.contract import CLASSES, BatchResult
from ich_viewer.core.errors import DecodeError
from ich_viewer.core.model import Cancellation, Cancelled, IchModel
from ich_viewer.core.slabs import SlabPlan

BATCH = 16
#: A backstop: the loader gives up a slice whose decoder runs past its own limit (15 s); a slice still not
#: decoded after this long (never started) is marked unreadable all the same, so a run always ends.
SLICE_TIMEOUT_S = 60.0
BatchCallback = Callable[[BatchResult], None]


@dataclass
class SeriesPrediction:
    """Per-slice results of one series; rows not yet computed are NaN (``done`` says which are).

    A slice that could not be decoded is in ``failed`` with its reason: its row stays NaN, so it is
    never flagged, and the rest of the series is still classified.
    """

    probabilities: np.ndarray  # float32 [Z, 6]
    cam: np.ndarray  # float32 [Z, 6, h, w], unnormalised Grad-CAM
    done: np.ndarray  # bool [Z]
    cancelled: bool = False
    failed: dict[int, str] = field(default_factory=dict)
    logits: np.ndarray | None = None  # float32 [Z, 6] (NaN until computed), when the model has them
    #: How the slices were fed when the series is thinner than the model's slices (None: slice by slice).
    slabs: SlabPlan | None = None

    @classmethod
    def empty(cls, n_slices: int, grid: tuple[int, int] = (1, 1)) -> "SeriesPrediction":
        return cls(np.full((n_slices, len(CLASSES)), np.nan, np.float32),
                   np.zeros((n_slices, len(CLASSES), *grid), np.float32), np.zeros(n_slices, bool))

    def add(self, batch: BatchResult) -> None:
        """Take in one batch's rows (the first batch sets the CAM grid)."""
        if not self.done.any() and self.cam.shape[-2:] != batch.cam.shape[-2:]:
            self.cam = np.zeros((len(self.done), len(CLASSES), *batch.cam.shape[-2:]), np.float32)
        if batch.logits is not None and self.logits is None:
            self.logits = np.full(self.probabilities.shape, np.nan, np.float32)
        self.probabilities[batch.indices], self.cam[batch.indices] = batch.probabilities, batch.cam
        if batch.logits is not None:
            self.logits[batch.indices] = batch.logits
        self.done[batch.indices] = True

    @property
    def complete(self) -> bool:
        """Every slice was classified or found unreadable."""
        return all(self.done[i] or i in self.failed for i in range(len(self.done)))


def predict_series(model: IchModel, volume, n_slices: int | None = None, *, batch_size: int = BATCH,
                   on_batch: BatchCallback | None = None, cancel: threading.Event | None = None,
                   order: np.ndarray | None = None, slabs: SlabPlan | None = None) -> SeriesPrediction:
    """Probabilities and CAMs for every slice.

    ``volume`` is an HU array [Z, H, W] or a :class:`VolumeLoader` (then each batch waits only
    for its own slices, so results start while the rest is still decoding). ``order`` is the slice
    order to process (default: from the middle outwards, because the viewer opens on the middle
    slice, so its results come first). ``cancel`` stops between batches. With ``slabs``
    (:func:`~ich_viewer.core.slabs.plan_for_series`) each slice is fed as the slab centred on it and its
    result stored for it; a batch then also waits for its slabs' neighbours, and one that cannot be
    decoded is left out of the slabs (it is unreadable itself, as ever).
    """
    n = n_slices if n_slices is not None else len(volume.array if hasattr(volume, "array") else volume)
    if order is None:
        middle = n // 2
        order = np.array(sorted(range(n), key=lambda i: (abs(i - middle), i)), int)
    if slabs is not None and len(slabs) != n:
        raise ValueError(f"a slab plan for {len(slabs)} slices given for a series of {n}")
    result = SeriesPrediction.empty(n)
    result.slabs = slabs
    for start in range(0, n, batch_size):
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        indices = np.sort(order[start:start + batch_size])
        wanted = indices if slabs is None else slabs.needed(indices)
        if hasattr(volume, "slice"):
            wanted, hu = _decoded(volume, wanted, result.failed)
        else:
            hu = np.asarray(volume[wanted], np.float32)
        indices = indices[~np.isin(indices, list(result.failed))]  # a slice that cannot be decoded has no result
        if not len(indices):
            continue
        if slabs is not None:
            hu = slabs.average(indices, wanted, hu)
        try:  # a Cancellation also stops a batch already running
            batch = model.run(hu, indices, cancel if isinstance(cancel, Cancellation) else None)
        except Cancelled:
            result.cancelled = True
            break
        batch = _valid_rows(batch, result.failed)
        if not len(batch.indices):
            continue
        result.add(batch)
        if on_batch is not None:
            on_batch(batch)
    return result


INVALID_OUTPUT = "the model gave no valid result for it (NaN, or a probability outside 0..1): the model file is faulty"


def _valid_rows(batch: BatchResult, failed: dict[int, str]) -> BatchResult:
    """The batch without slices whose probabilities are not numbers in [0, 1] or whose CAM is not finite; those
    go into ``failed``, as an undecodable slice does. A broken model must not read as a study with nothing in it
    (NaN is never above a threshold) nor flag with a "probability" of 1.9."""
    p, cam = batch.probabilities, batch.cam
    valid = (np.isfinite(p) & (p >= 0) & (p <= 1)).all(1) & np.isfinite(cam.reshape(len(cam), -1)).all(1)
    if valid.all():
        return batch
    for i in batch.indices[~valid]:
        failed[int(i)] = INVALID_OUTPUT
    return BatchResult(batch.indices[valid], p[valid], cam[valid], None if batch.logits is None else batch.logits[valid])


def _decoded(loader, indices: np.ndarray, failed: dict[int, str]) -> tuple[np.ndarray, np.ndarray | None]:
    """The batch's slices that decode (and their HU); the others go into ``failed`` with the reason (one
    already there, a slab neighbour found unreadable by an earlier batch, is not waited for again)."""
    good, slices = [], []
    for i in indices:
        if int(i) in failed:
            continue
        try:
            slices.append(loader.slice(int(i), timeout=SLICE_TIMEOUT_S))
            good.append(int(i))
        except (DecodeError, TimeoutError) as exc:
            failed[int(i)] = str(exc)
    return np.array(good, int), (np.stack(slices) if slices else None)


def cam_overlay(cam: np.ndarray, shape: tuple[int, int], scale: float, probability: float, threshold: float,
                show_below_threshold: bool = False) -> np.ndarray | None:
    """One class's CAM as [H, W] values in [0, 1] on the model's fixed scale, or None when hidden.

    A fixed scale (not per-image min-max) keeps a slice with nothing in it dark; below the class
    threshold nothing is shown unless asked, so the heat map never suggests a finding the model
    did not flag.
    """
    if not show_below_threshold and not probability >= threshold:
        return None
    values = resize(cam.astype(np.float32), shape, order=1, mode="edge", anti_aliasing=False)
    return np.clip(values / max(scale, 1e-12), 0.0, 1.0).astype(np.float32)


#: An overlay whose peak is under one step of its 256-colour table draws nothing at all.
CAM_VISIBLE = 1 / 255
#: What the viewer (short, under the colour bar's title) and the exports say beside a shown class whose Grad-CAM
#: draws nothing on this slice.
CAM_BLANK = "blank: no positive evidence"
CAM_BLANK_NOTE = f"{CAM_BLANK} on this slice"


def cam_blank(values: np.ndarray | None) -> bool:
    """Is this shown overlay (``cam_overlay`` inside the head) empty to the eye? Grad-CAM keeps only what raised
    the class's score, so a flagged slice can have none, e.g. when the probability comes from the whole
    image's context rather than one place."""
    return values is not None and not float(values.max(initial=0.0)) >= CAM_VISIBLE


def display_scale(prediction: SeriesPrediction, class_index: int, model_scale: float) -> float:
    """The CAM value shown at full colour for one class in one series: the model card's scale, or the
    series' own 99th-percentile peak when that is larger. Fixed across the series (never per image),
    so weak slices stay dark; the card's scale alone saturates on data unlike the model's validation set.
    """
    done = prediction.done
    if not done.any():
        return model_scale
    peaks = prediction.cam[done, class_index].reshape(int(done.sum()), -1).max(1)
    return float(max(model_scale, np.percentile(peaks, 99)))


def flagged_ranges(flags: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive flagged slices as inclusive (first, last) index pairs."""
    flags = np.asarray(flags, bool)
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def summarize(probabilities: np.ndarray, thresholds: np.ndarray) -> dict:
    """Per class: the maximum probability, its slice, whether it is flagged, the flagged ranges."""
    probabilities = np.asarray(probabilities, np.float32)
    summary = {}
    for c, name in enumerate(CLASSES):
        column = np.nan_to_num(probabilities[:, c], nan=-1.0)
        top = int(column.argmax()) if len(column) else -1
        flags = column >= thresholds[c]
        summary[name] = {"max_probability": float(column[top]) if top >= 0 and column[top] >= 0 else None,
                         "top_slice": top if top >= 0 and column[top] >= 0 else None,
                         # a class not flagged at all (not calibrated, rule not met) has no threshold
                         "threshold": float(thresholds[c]) if np.isfinite(thresholds[c]) else None,
                         "flagged": bool(flags.any()),
                         "flagged_slices": int(flags.sum()), "flagged_ranges": flagged_ranges(flags)}
    return summary
