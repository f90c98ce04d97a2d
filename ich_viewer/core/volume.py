"""Decoding a series into one contiguous HU array, in parallel, first slice first.

The array is int16 when every slice's rescale is integral (nearly all CT: slope 1, intercept
-1024), which halves the memory of a series (238 slices of 512x512: 125 MB instead of 250 MB);
otherwise float32. Either way callers get float32 HU from :meth:`VolumeLoader.slice` and
:meth:`VolumeLoader.result`.

Each thread decodes one slice at a time: uncompressed data in the thread itself, compressed data
through a decoder process (:mod:`~ich_viewer.core.decoder_process`), which the thread waits on without
holding the GIL, so every core is used either way.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

import numpy as np

from ich_viewer.core import decoder_process
from ich_viewer.core.errors import DecodeError
from ich_viewer.core.series import AIR_HU

if TYPE_CHECKING:  # pragma: no cover
    from ich_viewer.core.series import Series


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


INT16_MAX = np.iinfo(np.int16).max
#: A slice still decoding after this long is given up (marked failed, shown as air) so that nothing can
#: hold a series open forever. A compressed slice's decoder process is killed earlier (its own limit);
#: this is the backstop for reads in this process, such as a file on a drive that stopped answering.
SLICE_TIME_LIMIT_S = decoder_process.TIME_LIMIT_S + 5.0
#: How often waiting callers look for slices over the limit.
_CHECK_S = 0.25


def read_volume(series: "Series", workers: int | None = None) -> np.ndarray:
    """Every slice of ``series`` as one contiguous float32 HU array [Z, H, W]; :class:`DecodeError` if any
    slice fails (use a :class:`VolumeLoader` to show slices as they arrive, or to go on without the
    failed ones)."""
    return VolumeLoader(series, workers=workers).result()


def storage_dtype(series: "Series") -> type:
    """int16 when every slice's HU are integers (integral slope and intercept) that int16 holds whatever
    the stored bits are (so nothing is ever clipped), else float32."""
    exact = all(float(s.hu.slope).is_integer() and float(s.hu.intercept).is_integer()
                and s.hu.hu_range[1] <= INT16_MAX for s in series.slices)
    return np.int16 if exact else np.float32


class VolumeLoader:
    """Decodes a series in the background into ``array`` ([Z, H, W] HU, int16 or float32, see above).

    ``first`` is decoded before the others (the slice a viewer shows first, the middle by
    default). Slices that fail to decode are set to air and are listed in ``errors``.
    """

    def __init__(self, series: "Series", workers: int | None = None, first: int | None = None):
        from ich_viewer.core.dicom_pixels import decode_slice  # imports pydicom: only when a series is read

        self._decode = decode_slice
        # The slices, not the Series: the Series caches its loader, and a loader pointing back at it made a
        # cycle that kept each study's array until a full garbage collection (+18 MB a reopen).
        self._slices = series.slices
        n = len(series.slices)
        # np.empty: pages are only touched when a slice lands, so the first slice is not held up
        # by filling 250 MB; ``ready`` says which rows hold data.
        self.array = np.empty((n, series.rows, series.columns), dtype=storage_dtype(series))
        self._float_volume: np.ndarray | None = None
        self.ready = np.zeros(n, dtype=bool)
        self.errors: dict[int, str] = {}
        self.cancelled = False
        self._started: dict[int, float] = {}  # slices decoding now: when they started
        self._done = 0
        self._condition = threading.Condition()
        self._callbacks: list[Callable[[int], None]] = []
        first = n // 2 if first is None else first
        order = [first] + [i for i in range(n) if i != first]
        # Own threads on one queue rather than an executor: a thread stuck in a decoder is replaced, so the
        # slices queued behind it still get decoded.
        self._queue = deque(order)
        for _ in range(min(workers or default_workers(), n)):
            self._start_worker()

    def _start_worker(self) -> None:
        threading.Thread(target=self._work, name="decode", daemon=True).start()

    def _work(self) -> None:
        while not self.cancelled:
            try:
                index = self._queue.popleft()  # deque.popleft is atomic
            except IndexError:
                return
            self._decode_one(index)

    # ---- progress
    @property
    def done(self) -> int:
        """How many slices are finished (decoded, failed or given up)."""
        self._give_up_overdue()
        return self._done

    @property
    def finished(self) -> bool:
        return self.done == len(self.ready)

    def subscribe(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(index)`` (from a decoding thread) as each slice finishes."""
        with self._condition:
            self._callbacks.append(callback)
            already = [int(i) for i in np.flatnonzero(self.ready)]
        for index in already:
            callback(index)

    # ---- access
    def slice(self, index: int, timeout: float | None = None) -> np.ndarray:
        """float32 HU of one slice, waiting for it if needed (may be a view of ``array``: do not modify)."""
        if not self._wait_until(lambda: self.ready[index] or index in self.errors or self.cancelled, timeout):
            raise TimeoutError(f"slice {index} not decoded within {timeout} s")
        if index in self.errors:
            raise DecodeError(self.errors[index])
        if not self.ready[index]:  # cancelled before this slice was decoded: its row is uninitialised memory
            raise DecodeError("decoding was cancelled")
        return self.array[index].astype(np.float32, copy=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every slice is finished; False on timeout."""
        return self._wait_until(lambda: self._done == len(self.ready) or self.cancelled, timeout)

    def _wait_until(self, predicate, timeout: float | None) -> bool:
        """``Condition.wait_for`` that also gives up overdue slices while it waits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._give_up_overdue()
            step = _CHECK_S if deadline is None else max(0.0, min(_CHECK_S, deadline - time.monotonic()))
            with self._condition:
                if self._condition.wait_for(predicate, step):
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _give_up_overdue(self) -> None:
        now = time.monotonic()
        with self._condition:
            overdue = [i for i, start in self._started.items() if now - start > SLICE_TIME_LIMIT_S]
            for index in overdue:
                del self._started[index]
                self.errors[index] = f"its decoder took longer than {SLICE_TIME_LIMIT_S:.0f} s (given up)"
                self.array[index] = AIR_HU
                self._done += 1
            if overdue:
                self._condition.notify_all()
        for _ in overdue:
            if self._queue:
                self._start_worker()  # the stuck thread's replacement

    def result(self) -> np.ndarray:
        """The whole volume as float32 HU (converted once from int16 storage, then kept); raises
        :class:`DecodeError` if any slice failed or it was cancelled."""
        self.wait()
        if self.cancelled:
            raise DecodeError("decoding was cancelled")
        if self.errors:
            first = min(self.errors)
            raise DecodeError(f"{len(self.errors)} of {len(self.ready)} slices failed; slice {first + 1}: {self.errors[first]}")
        if self._float_volume is None:
            self._float_volume = self.array.astype(np.float32, copy=False)
        return self._float_volume

    def cancel(self) -> None:
        """Stop decoding; slices already running finish, the rest are dropped."""
        with self._condition:
            self.cancelled = True
            self._condition.notify_all()

    # ---- worker
    def _decode_one(self, index: int) -> None:
        if self.cancelled:
            return
        with self._condition:
            self._started[index] = time.monotonic()
        hu, failed = None, None
        try:
            hu = self._decode(self._slices[index], self.array.shape[1:])
        except BaseException as exc:  # reported per slice, never lost; a decoder's panic is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            failed = str(exc) if isinstance(exc, DecodeError) else f"could not decode it ({type(exc).__name__})"
        with self._condition:
            if self._started.pop(index, None) is None:
                return  # given up as overdue meanwhile: already counted, its row already air
            # Integral HU in storage_dtype's range, floored at AIR_HU by decode: the int16 cast is exact.
            self.array[index] = AIR_HU if failed is not None else hu
            if failed is None:
                self.ready[index] = True
            else:
                self.errors[index] = failed
            self._done += 1
            callbacks = list(self._callbacks)
            self._condition.notify_all()
        for callback in callbacks:
            callback(index)
