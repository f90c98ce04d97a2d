"""Lazy, parallel decoding: the first slice comes first, the volume is one contiguous array."""

from __future__ import annotations

import time

import numpy as np
import pytest

import ich_viewer
from ich_viewer.core.errors import DecodeError
from ich_viewer.core.volume import VolumeLoader, read_volume
from tests import dicom_factory as make


def test_cq500_volume_is_one_contiguous_float32_array_in_slice_order(cq500_dir):
    series = ich_viewer.load(cq500_dir).series[0]
    loader = VolumeLoader(series)
    volume = loader.result()
    assert volume.shape == (238, 512, 512) and volume.dtype == np.float32 and volume.flags.c_contiguous
    assert loader.result() is volume  # converted once, kept
    brain = volume[150, 200:300, 200:300]
    assert 0 < float(np.median(brain)) < 80  # soft tissue of a real head, in HU
    single = read_volume(ich_viewer.load(series.files[150]).series[0])[0]
    np.testing.assert_array_equal(volume[150], single)


def test_integral_rescale_is_stored_as_int16_and_read_back_as_float32_hu(cq500_dir):
    """Half the memory for the usual CT (slope 1, intercept -1024), the same HU to the caller."""
    series = ich_viewer.load(cq500_dir).series[0]
    loader = VolumeLoader(series, workers=2)
    volume = loader.result()
    assert loader.array.dtype == np.int16 and loader.array.nbytes == 238 * 512 * 512 * 2
    assert volume.dtype == np.float32 and loader.slice(150).dtype == np.float32
    np.testing.assert_array_equal(loader.slice(150), volume[150])
    reference = ich_viewer.load(series.files[150]).series[0]  # a lone slice takes the float32 route of decode
    from ich_viewer.core.dicom_pixels import decode_slice
    np.testing.assert_array_equal(volume[150], decode_slice(reference.slices[0]))


def test_a_fractional_rescale_keeps_float32_storage(tmp_path):
    ds = make.read("CT_small.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1024.25
    ds.save_as(tmp_path / "half.dcm")
    series = ich_viewer.load(tmp_path).series[0]
    loader = VolumeLoader(series, workers=1)
    volume = loader.result()
    assert loader.array.dtype == np.float32
    stored = make.read(str(tmp_path / "half.dcm")).pixel_array.astype(np.float32)
    expected = np.maximum(stored * 0.5 - 1024.25, -1024.0)
    np.testing.assert_allclose(volume[0], expected)
    assert np.any(volume[0] % 1 != 0)  # the fractions survive


def test_hu_beyond_int16_are_stored_as_float_and_kept_exactly(tmp_path):
    """Slope 2 takes stored extremes beyond int16: the series is stored as float32, so the top keeps its
    value (int16 storage clipped it at 32767), the bottom floors at air, nothing wraps."""
    ds = make.read("CT_small.dcm")
    pixels = ds.pixel_array.copy()
    pixels[0, :3] = -32768, 32767, 100
    # Intercept -1000, not -1024: a wrapped bottom would read -1000, distinguishable from the air floor.
    ds.PixelData, ds.RescaleSlope, ds.RescaleIntercept = pixels.tobytes(), 2, -1000
    ds.save_as(tmp_path / "extremes.dcm")
    loader = VolumeLoader(ich_viewer.load(tmp_path).series[0], workers=1)
    volume = loader.result()
    assert loader.array.dtype == np.float32
    np.testing.assert_array_equal(volume[0, 0, :3], [-1024, 2 * 32767 - 1000, 2 * 100 - 1000])


def test_usual_ct_storage_stays_int16(tmp_path):
    """Signed 16-bit, slope 1, intercept -1024 (most CT): every stored value fits int16 HU exactly."""
    ds = make.read("CT_small.dcm")
    pixels = ds.pixel_array.copy()
    pixels[0, :2] = -32768, 32767
    ds.PixelData, ds.RescaleSlope, ds.RescaleIntercept = pixels.tobytes(), 1, -1024
    ds.save_as(tmp_path / "usual.dcm")
    loader = VolumeLoader(ich_viewer.load(tmp_path).series[0], workers=1)
    volume = loader.result()
    assert loader.array.dtype == np.int16
    np.testing.assert_array_equal(volume[0, 0, :2], [-1024, 32767 - 1024])


def test_requested_first_slice_is_decoded_before_the_rest(cq500_dir):
    series = ich_viewer.load(cq500_dir).series[0]
    order: list[int] = []  # list.append is atomic: safe from the decoding threads
    loader = VolumeLoader(series, workers=2, first=200)
    loader.subscribe(order.append)
    first = loader.slice(200)
    assert first.shape == (512, 512)
    loader.wait()
    assert loader.finished and not loader.errors and sorted(order) == list(range(238))
    # Submitted first: in plain order it would finish ~200th. A busy machine can let a few others
    # finish while its thread waits for the GIL, so allow a handful.
    assert order.index(200) < 8


def test_cancel_stops_decoding_and_result_says_so(cq500_dir):
    series = ich_viewer.load(cq500_dir).series[0]
    loader = VolumeLoader(series, workers=1)
    loader.cancel()
    with pytest.raises(DecodeError, match="cancelled"):
        loader.result()
    assert loader.done < len(series)


def test_a_slice_that_fails_is_reported_and_set_to_air(tmp_path):
    for i in range(3):
        make.ct_slice_from_hu(np.full((8, 8), 40.0), tmp_path / f"s{i}.dcm", z=i * 5.0,
                              series_uid="1.2.7.1", study_uid="1.2.7", instance=i + 1)
    series = ich_viewer.load(tmp_path).series[0]
    (tmp_path / "s1.dcm").write_bytes(b"gone")  # the file changed after scanning
    loader = VolumeLoader(series)
    loader.wait()
    assert set(loader.errors) == {1} and loader.array[1].max() == -1024
    assert loader.array[0].min() == 40 and loader.array[2].min() == 40
    with pytest.raises(DecodeError, match="1 of 3 slices failed; slice 2"):
        read_volume(series)


def test_a_slice_asked_for_after_cancel_is_an_error_not_uninitialised_memory(cq500_dir):
    series = ich_viewer.load(cq500_dir).series[0]
    loader = VolumeLoader(series, workers=1, first=0)
    loader.cancel()
    loader.wait()
    undecoded = int(np.flatnonzero(~loader.ready)[-1])
    with pytest.raises(DecodeError, match="cancelled"):
        loader.slice(undecoded, timeout=5)


def test_a_slice_whose_decoder_never_returns_is_given_up_and_the_rest_finishes(tmp_path, monkeypatch):
    """A decoder caught in a loop held the series (and triage) forever; past the limit the slice is failed."""
    import threading

    from ich_viewer.core import dicom_pixels, volume

    for i in range(4):
        make.ct_slice_from_hu(np.full((8, 8), 40.0), tmp_path / f"s{i}.dcm", z=i * 5.0,
                              series_uid="1.2.7.2", study_uid="1.2.7", instance=i + 1)
    series = ich_viewer.load(tmp_path).series[0]
    stuck, release, real_decode = series.slices[2], threading.Event(), dicom_pixels.decode_slice

    def decode(ref, shape=None):
        if ref is stuck:
            release.wait(30)  # "never" returns, until the test ends
        return real_decode(ref, shape)

    monkeypatch.setattr(volume, "SLICE_TIME_LIMIT_S", 0.5)
    monkeypatch.setattr(dicom_pixels, "decode_slice", decode)
    loader = VolumeLoader(series, workers=2)
    try:
        assert loader.wait(timeout=10)
        assert set(loader.errors) == {2} and "given up" in loader.errors[2]
        assert loader.ready.sum() == 3 and (loader.array[2] == -1024).all()
        with pytest.raises(DecodeError, match="given up"):
            loader.slice(2)
    finally:
        release.set()
    time.sleep(0.2)  # the stuck thread returns late: its result is dropped, nothing is counted twice
    assert loader.done == 4 and not loader.ready[2]


def test_slices_queued_behind_stuck_decoders_are_still_decoded(tmp_path, monkeypatch):
    """With every decoding thread stuck, the rest of the series would wait behind them forever."""
    import threading

    from ich_viewer.core import dicom_pixels, volume

    for i in range(6):
        make.ct_slice_from_hu(np.full((8, 8), 40.0), tmp_path / f"s{i}.dcm", z=i * 5.0,
                              series_uid="1.2.7.3", study_uid="1.2.7", instance=i + 1)
    series = ich_viewer.load(tmp_path).series[0]
    stuck, release, real_decode = set(series.slices[2:4]), threading.Event(), dicom_pixels.decode_slice

    def decode(ref, shape=None):
        if ref in stuck:
            release.wait(30)
        return real_decode(ref, shape)

    monkeypatch.setattr(volume, "SLICE_TIME_LIMIT_S", 0.5)
    monkeypatch.setattr(dicom_pixels, "decode_slice", decode)
    loader = VolumeLoader(series, workers=2, first=2)  # slices 2 and 3 first: both threads get stuck
    try:
        assert loader.wait(timeout=10)
        assert set(loader.errors) == {2, 3} and loader.ready.sum() == 4
    finally:
        release.set()
