"""Compressed data decodes in decoder processes: a crash, a loop or a memory bomb there costs one slice.

The crash cases are real: GDCM aborting (std::terminate) on a real JPEG 2000 head CT labelled as colour,
and decoder processes killed by a signal while they decode; the loop is a real process that does not
answer in time.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array

import ich_viewer
from ich_viewer.core import decoder_process, dicom_pixels
from ich_viewer.core.errors import DecodeError
from ich_viewer.core.volume import VolumeLoader
from tests import dicom_factory as make

LINUX = sys.platform.startswith("linux")


def _jpeg2000_series(folder: Path, n: int = 4) -> Path:
    """``n`` slices of one series, each the real JPEG 2000 head CT (pydicom-data's 693_J2KR.dcm)."""
    ds = make.read("693_J2KR.dcm")
    for i in range(n):
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{i + 1}"
        ds.SeriesInstanceUID, ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.7"
        ds.InstanceNumber, ds.ImagePositionPatient = i + 1, [0.0, 0.0, 5.0 * i]
        ds.save_as(folder / f"j2k{i}.dcm")
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z" if LINUX else True


def _wait_until_gone(pids, timeout: float = 10.0) -> None:
    """Until none of ``pids`` is alive, or ``timeout``: a busy machine delivers signals late."""
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_compressed_slices_are_decoded_in_another_process_with_the_same_result(tmp_path):
    series = ich_viewer.load(_jpeg2000_series(tmp_path, 1)).series[0]
    ref = series.slices[0]
    isolated = dicom_pixels.decode_slice(ref, (series.rows, series.columns))
    in_process = dicom_pixels.stored_to_hu(dicom_pixels.decode_stored(ref), ref.hu)
    np.testing.assert_array_equal(isolated, in_process)
    assert isolated.std() > 100  # a real head, not air
    children = decoder_process.child_pids()
    assert children and os.getpid() not in children
    assert decoder_process.run(os.getpid) in children


def test_a_real_native_abort_costs_one_call_and_the_next_decodes(tmp_path):
    """GDCM throws through C++ into std::terminate on this file; in-process that killed the viewer."""
    ds = make.read("693_J2KR.dcm")
    ds.PhotometricInterpretation = "YBR_RCT"
    ds.save_as(tmp_path / "colour.dcm")
    with pytest.raises(decoder_process.DecoderFailure, match="crashed .SIGABRT"):
        decoder_process.run(functools.partial(pixel_array, decoding_plugin="gdcm"), str(tmp_path / "colour.dcm"))
    (tmp_path / "good").mkdir()
    good = ich_viewer.load(_jpeg2000_series(tmp_path / "good", 1)).series[0]
    assert dicom_pixels.decode_slice(good.slices[0]).std() > 100


def test_a_decoder_that_does_not_answer_is_killed_at_the_time_limit():
    started = time.monotonic()
    with pytest.raises(decoder_process.DecoderFailure, match="stopped after 1 s"):
        decoder_process.run(time.sleep, 60, timeout=1.0)
    assert time.monotonic() - started < 10
    assert all(_alive(pid) for pid in decoder_process.child_pids())  # the stuck one is gone, not kept
    assert decoder_process.run(sum, [1, 2, 3]) == 6


@pytest.mark.skipif(not LINUX, reason="the address-space cap (RLIMIT_AS) is applied on Linux only")
def test_a_decoder_asking_for_gigabytes_gets_an_error_not_the_memory():
    with pytest.raises(DecodeError, match="memory limit"):
        decoder_process.run(bytearray, 3 << 30)
    assert decoder_process.run(len, b"abc") == 3


def test_a_crashed_decoder_marks_its_slice_and_the_rest_of_the_series_loads(tmp_path):
    """Decoder processes killed by SIGSEGV while one of them decodes: that slice fails with the reason; the
    idle ones are replaced without costing a slice; the series finishes."""
    series = ich_viewer.load(_jpeg2000_series(tmp_path, 4)).series[0]
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: the child stays busy on this slice
    blocked = dataclasses.replace(series.slices[2], file=dataclasses.replace(series.slices[2].file, path=str(fifo)))
    series = dataclasses.replace(series, slices=series.slices[:2] + (blocked,) + series.slices[3:])
    loader = VolumeLoader(series, workers=2, first=2)
    deadline = time.monotonic() + 30
    while loader.done < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loader.done == 3 and not loader.ready[2]
    time.sleep(0.2)
    killed = decoder_process.child_pids()
    for pid in killed:
        os.kill(pid, signal.SIGSEGV)
    assert loader.wait(timeout=10)
    _wait_until_gone(killed)
    assert set(loader.errors) == {2}
    assert "JPEG 2000" in loader.errors[2] and "crashed (SIGSEGV)" in loader.errors[2]
    assert loader.ready.sum() == 3 and (loader.array[2] == -1024).all()
    assert dicom_pixels.decode_slice(series.slices[0]).std() > 100  # the killed idle children were replaced


def test_a_child_that_dies_idle_before_taking_a_request_costs_no_slice(tmp_path, monkeypatch):
    """The race CI once hit: an idle child is killed after the pool saw it alive and before it reads the
    next request. The request goes to a fresh child instead of failing as "the decoder crashed"."""
    series = ich_viewer.load(_jpeg2000_series(tmp_path, 1)).series[0]
    assert dicom_pixels.decode_slice(series.slices[0]).std() > 100  # at least one idle child now
    killed = decoder_process.child_pids()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    _wait_until_gone(killed)
    # The pool's liveness check runs before the request is written; make it see the dead children as alive,
    # as it does when the signal lands between the check and the write.
    monkeypatch.setattr(decoder_process._Child, "is_alive", lambda child: True)
    assert dicom_pixels.decode_slice(series.slices[0]).std() > 100
    assert not set(decoder_process.child_pids()) & set(killed)


@pytest.mark.skipif(not LINUX, reason="reads resource limits from /proc")
def test_a_crashing_decoder_writes_no_core_file():
    """A core file would hold the slice's pixels, written into the user's working folder."""
    decoder_process.prestart(1).join(60)
    (pid,) = decoder_process.child_pids()[:1]
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    core = next(line for line in limits if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core


@pytest.mark.skipif(not LINUX, reason="reads parent process ids from /proc")
def test_decoder_processes_end_with_the_application_even_when_it_is_killed(tmp_path):
    _jpeg2000_series(tmp_path, 2)
    script = textwrap.dedent(f"""
        import os, signal, sys
        import ich_viewer
        from ich_viewer.core import decoder_process, dicom_pixels
        series = ich_viewer.load({str(tmp_path)!r}).series[0]
        dicom_pixels.decode_slice(series.slices[0])
        mine = [int(p) for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())]
        def parent(pid):
            try:
                return int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                return -1
        print(" ".join(str(p) for p in mine if parent(p) == os.getpid()), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    descendants = [int(pid) for pid in out.stdout.split()]
    assert descendants, "the decode started no process"
    _wait_until_gone(descendants)
    assert not [pid for pid in descendants if _alive(pid)]


def test_uncompressed_slices_stay_in_this_process(tmp_path, monkeypatch):
    make.ct_slice_from_hu(np.full((16, 16), 40.0), tmp_path / "native.dcm", z=0.0,
                          series_uid="1.2.826.0.1.3680043.8.498.78", study_uid="1.2.826.0.1.3680043.8.498.8", instance=1)
    ref = ich_viewer.load(tmp_path).series[0].slices[0]
    assert ref.transfer_syntax in pydicom.uid.UncompressedTransferSyntaxes

    def refuse(*args, **kwargs):
        raise AssertionError("uncompressed data was sent to a decoder process")

    monkeypatch.setattr(decoder_process, "run", refuse)
    np.testing.assert_array_equal(dicom_pixels.decode_slice(ref), np.full((16, 16), 40.0, dtype=np.float32))


def test_the_applications_entry_point_serves_as_a_decoder_process(monkeypatch):
    """A frozen build has no ``python -c``: it starts its own executable with the serve flag, which
    ``ich_viewer.__main__`` hands to the decoder loop before anything else (no Qt, no model)."""
    monkeypatch.setattr(decoder_process, "_command",
                        lambda: [sys.executable, "-m", "ich_viewer", decoder_process.SERVE_FLAG])
    child = decoder_process._Child()
    try:
        assert child.run(os.getpid, (), timeout=30) == child.process.pid
        with pytest.raises(DecodeError, match="could not decode"):
            child.run(dicom_pixels.decode_stored, (_unreadable_ref(),), timeout=30)
        assert "PySide6" not in child.run(_loaded_modules, (), timeout=30)
    finally:
        child.stop()
    assert child.process.returncode is not None


def _unreadable_ref():
    from ich_viewer.core.series import FileRef, HuTransform, SliceRef

    return SliceRef(FileRef(os.devnull), None, "1.2.3", None, None, HuTransform(), pydicom.uid.JPEG2000)


def _loaded_modules() -> str:
    return " ".join(sys.modules)


def test_a_spare_decoder_whose_parent_has_gone_exits_quietly():
    """A short triage run exits before its spare decoder processes have said they are ready: each then
    finds the pipe broken and must end with exit code 0 and nothing on stderr (a traceback there landed after
    the user's shell prompt)."""
    child = subprocess.Popen(decoder_process._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=decoder_process._environment())
    child.stdout.close()  # the parent is gone before the child's first message
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0
    assert stderr.decode() == ""
