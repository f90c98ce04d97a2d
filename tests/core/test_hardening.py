"""Hostile input: each bad file is reported and skipped, each bad slice marked; the rest still loads.

Every case starts from a real file (pydicom's CT_small.dcm and JPEG 2000 head CT, the CQ500 series)
with one header value or byte range changed, the way the outside tester's mutations did, and sits in a
folder beside real good slices that must all still be loaded.
"""

from __future__ import annotations

import math
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate, generate_frames

import ich_viewer
from ich_viewer.core import archives
from ich_viewer.core.errors import NoImagesFoundError
from ich_viewer.core.volume import VolumeLoader, read_volume
from tests import dicom_factory as make

GOOD = 3


def _good_slices(folder: Path) -> None:
    for i in range(GOOD):
        make.ct_slice_from_hu(np.full((128, 128), 30.0 + i), folder / f"good{i}.dcm", z=5.0 * i,
                              series_uid="1.2.826.0.1.3680043.8.498.1", study_uid="1.2.826.0.1.3680043.8.498", instance=i + 1)


def _load_beside_good(tmp_path: Path, name: str, data: bytes):
    """Load a folder of three good slices and the case; the good ones must all be there."""
    _good_slices(tmp_path)
    (tmp_path / name).write_bytes(data)
    result = ich_viewer.load(tmp_path)
    good = [s for s in result.series if all("good" in f for f in s.files)]
    assert good and len(good[0]) == GOOD, [str(s) for s in result.skipped]
    return result


def _ct_small(**tags) -> bytes:
    ds = make.read("CT_small.dcm")
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    from io import BytesIO
    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _reason(result, name: str) -> str | None:
    reasons = [s.reason for s in result.skipped if Path(s.path).name == name]
    assert len(reasons) <= 1
    return reasons[0] if reasons else None


REFUSED = [
    ("NumberOfFrames", "-1", "NumberOfFrames"),
    ("NumberOfFrames", "2147483647", "NumberOfFrames"),
    ("Rows", 65535, "Rows"),
    ("Columns", 0, "Columns"),
    ("RescaleSlope", "NaN", "RescaleSlope"),
    ("RescaleIntercept", "inf", "RescaleIntercept"),
    ("RescaleSlope", "1e30", "rescale"),
    ("BitsAllocated", 12, "BitsAllocated"),
    ("PhotometricInterpretation", "RGB", "colour"),
    ("Rows", 64, "does not fit its image size"),  # the pixel data is 128x128: never reinterpreted
]


@pytest.mark.parametrize("keyword, value, phrase", REFUSED, ids=[f"{k}={v}" for k, v, _ in REFUSED])
def test_header_values_out_of_bounds_are_refused_with_the_tag_named(tmp_path, keyword, value, phrase):
    result = _load_beside_good(tmp_path, "case.dcm", _ct_small(**{keyword: value}))
    reason = _reason(result, "case.dcm")
    assert reason is not None and phrase in reason and "case" not in reason


TOLERATED = [
    ("ImagePositionPatient", [1.0, 2.0]),
    ("ImagePositionPatient", [1.0, 2.0, 3.0, 4.0]),
    ("ImageOrientationPatient", [1.0, 0.0, 0.0]),
    ("ImageOrientationPatient", [1.0, 0.0, "NaN", 0.0, 1.0, 0.0]),
    ("PixelSpacing", ["NaN", "0.5"]),
    ("InstanceNumber", ""),
    ("NumberOfFrames", ""),
]


@pytest.mark.parametrize("keyword, value", TOLERATED, ids=[f"{k}={v}" for k, v in TOLERATED])
def test_malformed_geometry_counts_as_absent_and_the_file_still_loads(tmp_path, keyword, value):
    result = _load_beside_good(tmp_path, "case.dcm", _ct_small(**{keyword: value}))
    case = next(s for s in result.series if any("case" in f for f in s.files))
    assert all(s.position is None or len(s.position) == 3 for s in case.slices)
    assert case.orientation is None or len(case.orientation) == 6 and all(map(math.isfinite, case.orientation))
    assert all(map(math.isfinite, case.spacing))
    assert np.isfinite(read_volume(case)).all()


def test_an_empty_integer_string_in_a_fast_scanned_header_is_not_a_crash(tmp_path):
    """pydicom's own explicit_VR-UN.dcm has empty IS values; GDCM's scanner read them and int('') escaped."""
    result = _load_beside_good(tmp_path, "case.dcm", _ct_small(SamplesPerPixel=None, NumberOfFrames=""))
    assert _reason(result, "case.dcm") is None
    make.copy(make.dicom_testfile("explicit_VR-UN.dcm"), tmp_path / "un.dcm")
    ich_viewer.load(tmp_path)  # loads or skips it; never a ValueError


def test_a_corrupt_transfer_syntax_uid_is_a_skip_reason(tmp_path):
    data = _ct_small()
    syntax = uid.ExplicitVRLittleEndian.encode() + b"\x00"
    assert syntax in data
    result = _load_beside_good(tmp_path, "case.dcm", data.replace(syntax, b"1.2.840.10008.\xff\xfe.12\x00", 1))
    assert "transfer syntax" in _reason(result, "case.dcm")


def test_a_colour_jpeg2000_labelled_ct_is_refused_before_any_decoder_sees_it(tmp_path):
    """GDCM aborts the process on this file (std::terminate): the loader must refuse it from the header."""
    ds = make.read("693_J2KR.dcm")
    ds.PhotometricInterpretation = "YBR_RCT"
    ds.save_as(tmp_path / "j2k.dcm")
    result = _load_beside_good(tmp_path, "j2k.dcm", (tmp_path / "j2k.dcm").read_bytes())
    assert "colour" in _reason(result, "j2k.dcm")


def _reencapsulated(src: pydicom.Dataset, frame: bytes, dst: Path) -> bytes:
    src.PixelData = encapsulate([frame])
    src.save_as(dst)
    return dst.read_bytes()


def test_a_decoder_panic_marks_the_slice_and_decoding_ends(tmp_path):
    """pylibjpeg-rle panics (a BaseException) on a corrupt stream; the decoding thread used to die with it
    and volume() waited forever."""
    rle = make.save_with_syntax(make.read("CT_small.dcm"), tmp_path / "rle.dcm", uid.RLELossless)
    ds = pydicom.dcmread(rle)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    rng = np.random.default_rng(1)
    for position in rng.integers(64, len(frame), 40):
        frame[position] = rng.integers(0, 256)
    data = _reencapsulated(ds, bytes(frame), tmp_path / "rle.dcm")
    rle.unlink()
    result = _load_beside_good(tmp_path, "case.dcm", data)
    case = next(s for s in result.series if any("case" in f for f in s.files))
    loader = VolumeLoader(case)
    assert loader.wait(timeout=30) and set(loader.errors) == {0}
    assert "RLE" in loader.errors[0] and "case" not in loader.errors[0]


def test_truncated_jpeg_lossless_data_is_an_error_not_a_wrong_image(tmp_path):
    """libjpeg fills a truncated scan with guesses; the end-of-image marker must be there."""
    ll = pydicom.dcmread(make.relabel_as_ct("JPEG-LL.dcm", tmp_path / "ll.dcm"))
    frame = next(generate_frames(ll.PixelData, number_of_frames=1))
    data = _reencapsulated(ll, frame[: int(len(frame) * 0.7)], tmp_path / "ll.dcm")
    (tmp_path / "ll.dcm").unlink()
    series = ich_viewer.load(_write(tmp_path / "case", "cut.dcm", data)).series[0]
    loader = VolumeLoader(series)
    assert loader.wait(timeout=30) and "truncated JPEG data" in loader.errors[0]


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return folder


def _in_thread(function, timeout: float = 60.0):
    """Run ``function`` and fail (instead of hanging the suite) if it does not return in time."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", function()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s"
    return box["value"]


def test_a_pipe_in_the_folder_is_skipped_not_waited_on(tmp_path):
    _good_slices(tmp_path)
    os.mkfifo(tmp_path / "pipe.dcm")
    result = _in_thread(lambda: ich_viewer.load(tmp_path))
    assert _reason(result, "pipe.dcm") == "not a regular file (a pipe, socket or device)"
    assert len(result.series[0]) == GOOD


def test_an_unreadable_subfolder_is_reported(tmp_path, monkeypatch):
    """Permissions do not stop root (CI), so the listing error is raised where os.walk meets it."""
    _good_slices(tmp_path)
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = ich_viewer.load(tmp_path)
    assert _reason(result, "locked") == "folder could not be read (Permission denied)"
    assert len(result.series[0]) == GOOD


# ----------------------------------------------------------------------------- archives


def _zip_of_good_slices(tmp_path: Path, name: str = "study.zip", extra=()) -> Path:
    folder = tmp_path / "slices"
    folder.mkdir()
    _good_slices(folder)
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.iterdir()):
            z.write(path, path.name)
        for member, data in extra:
            z.writestr(member, data)
    return archive


def test_a_zip_is_opened_once_not_once_per_member(tmp_path, monkeypatch):
    """Re-opening per member parsed the central directory each time: 5,000 members took 105 s."""
    archive = _zip_of_good_slices(tmp_path, extra=[(f"notes/{i}.txt", b"x") for i in range(200)])
    archives._open.clear()
    opened = []
    real = zipfile.ZipFile
    monkeypatch.setattr(archives.zipfile, "ZipFile", lambda *a, **k: opened.append(a) or real(*a, **k))
    result = ich_viewer.load(archive)
    assert len(read_volume(result.series[0])) == GOOD and len(result.other_files) == 200  # each member read
    assert len(opened) == 1


def test_zip_bombs_and_escaping_paths_are_refused_member_by_member(tmp_path):
    bomb = b"\0" * (8 * 2**20)  # deflates ~1000:1
    archive = _zip_of_good_slices(tmp_path, extra=[("bomb.dcm", bomb), ("../outside.dcm", b"x"), ("/abs.dcm", b"x"),
                                                   ("d/../../up.dcm", b"x"), ("d/../inside.dcm", b"x")])
    result = ich_viewer.load(archive)
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert "zip bomb" in reasons["bomb.dcm"]
    assert "leaves the archive" in reasons["outside.dcm"] and "leaves the archive" in reasons["abs.dcm"]
    assert "leaves the archive" in reasons["up.dcm"]
    assert reasons["inside.dcm"] == "not a DICOM file"  # read: "d/../inside.dcm" stays inside (a third tester)
    assert len(read_volume(result.series[0])) == GOOD


def test_a_zip_inside_the_zip_is_named_as_such_not_called_not_dicom(tmp_path):
    import io
    import zipfile

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("slice.dcm", _ct_small())
    result = ich_viewer.load(_zip_of_good_slices(tmp_path, extra=[("more/inner.zip", inner.getvalue())]))
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons == {"inner.zip": "a zip archive inside a zip archive: unzip the outer one"}
    assert len(read_volume(result.series[0])) == GOOD


def test_a_zip_member_hidden_by_a_later_one_of_the_same_name_is_reported(tmp_path):
    """Found by an outside tester: two slices stored as slice.dcm in one zip became one slice (the other read
    twice, then called a duplicate of itself): a slice lost under a false reason."""
    import warnings

    ds = make.read("CT_small.dcm")
    hidden = []
    for z in (50.0, 60.0):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.79.{int(z)}"
        ds.ImagePositionPatient = [0, 0, z]
        from io import BytesIO
        out = BytesIO()
        ds.save_as(out)
        hidden.append(("same/slice.dcm", out.getvalue()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name as it writes it
        result = ich_viewer.load(_zip_of_good_slices(tmp_path, extra=hidden))
    assert [s.reason for s in result.skipped] == [
        "a zip member with the same name as a later one, which is the one read (unpack the archive to read both)"]
    assert not any("duplicate" in s.reason for s in result.skipped)
    assert sum(len(s) for s in result.series) == GOOD + 1


def test_an_archive_with_too_many_members_is_refused_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "MAX_MEMBERS", 10)
    archive = _zip_of_good_slices(tmp_path, extra=[(f"{i}.txt", b"x") for i in range(20)])
    with pytest.raises(NoImagesFoundError, match="more than 10"):
        ich_viewer.load(archive)


def test_reasons_never_name_the_file_and_numbers_say_which(tmp_path):
    _good_slices(tmp_path)
    (tmp_path / "DOE^JANE_1.dcm").write_bytes(_ct_small(Rows=65535))
    (tmp_path / "DOE^JANE_2.bin").write_text("notes")
    result = ich_viewer.load(tmp_path)
    assert result.files_found == GOOD + 2
    assert all("DOE" not in s.reason for s in result.skipped)
    assert sorted(s.anonymous(result.files_found) for s in result.skipped) == [
        "file 1 of 5: its Rows (65535) is outside 1..4096", "file 2 of 5: not a DICOM file"]


# ----------------------------------------------------------------------------- corrupt element lengths

LENGTH_CASE = r'''
import sys
import ich_viewer
from ich_viewer.core.errors import NoImagesFoundError
try:
    result = ich_viewer.load(sys.argv[1])
except NoImagesFoundError as exc:
    result = exc
print("REASONS", [s.reason for s in result.skipped])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) across exec
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("PEAK_MB", peak_kb / 1024)
'''


def _corrupt_lengths(data: bytes) -> list[bytes]:
    """A long length on the first sequence, and a sequence whose VR bytes are broken (GDCM then reads a
    length of its own choosing): the second took GDCM's scanner 5.3 GB on a CQ500 slice."""
    at = data.index(b"SQ\x00\x00", 132)
    huge = data[:at + 4] + b"\xf0\xff\xff\x7f" + data[at + 8:]
    broken_vr = data[:at] + b"\xf0\xff\xff\xff\xf0\xff\xff\xff" + data[at + 8:]
    return [huge, broken_vr]


def _with_a_sequence() -> bytes:
    from io import BytesIO

    ds = make.read("CT_small.dcm")
    ds.ReferencedImageSequence = [pydicom.Dataset()]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
    buffer = BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", [0, 1], ids=["long length", "broken VR"])
def test_a_corrupt_element_length_is_kept_from_gdcm(tmp_path, case):
    from ich_viewer.core.fast_scan import lengths_fit

    path = _write(tmp_path, "case.dcm", _corrupt_lengths(_with_a_sequence())[case]) / "case.dcm"
    assert not lengths_fit(str(path))
    assert lengths_fit(str(_write(tmp_path, "intact.dcm", _with_a_sequence()) / "intact.dcm"))


@pytest.mark.parametrize("case", [0, 1], ids=["long length", "broken VR"])
def test_a_corrupt_element_length_in_a_real_slice_costs_no_memory(tmp_path, cq500_dir, case):
    """In a fresh process: GDCM's scanner allocated what the broken element claimed (5.3 GB)."""
    import subprocess
    import sys

    data = _corrupt_lengths(sorted(cq500_dir.glob("*.dcm"))[0].read_bytes())[case]
    path = _write(tmp_path, "case.dcm", data) / "case.dcm"
    run = subprocess.run([sys.executable, "-c", LENGTH_CASE, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-1500:]
    assert "unreadable DICOM file" in run.stdout
    assert float(run.stdout.rsplit("PEAK_MB", 1)[1]) < 1024


def test_no_compressed_syntax_is_decoded_by_gdcm():
    """GDCM aborts the whole process on some malformed data; every syntax has a decoder that raises instead."""
    from ich_viewer.core.dicom_pixels import DECODER_ADVICE, decoder_plugin

    chosen = {str(syntax): decoder_plugin(syntax) for syntax in DECODER_ADVICE if syntax != uid.RLELossless}
    assert "" not in chosen.values() and "gdcm" not in chosen.values(), chosen
