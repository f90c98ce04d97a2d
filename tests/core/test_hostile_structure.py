"""Hostile structure found by the fifth outside tester: files and folders that crashed, hung or exhausted the
loader although every single value in them was in bounds. Each starts from a real file (pydicom's CT_small.dcm)
and must leave the good slices beside it loaded.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet

import ich_viewer
from ich_viewer.core.errors import NoImagesFoundError
from ich_viewer.core.fast_scan import MAX_INFLATED, MAX_NESTING, lengths_fit
from tests import dicom_factory as make

PATIENT_NAME = b"\x10\x00\x10\x00PN"  # (0010,0010) in explicit VR little endian: private data goes before it

LOAD_AND_MEASURE = r'''
import sys
import ich_viewer
from ich_viewer.core.errors import NoImagesFoundError
try:
    result = ich_viewer.load(sys.argv[1])
except NoImagesFoundError as exc:
    result = exc
print("SLICES", sum(len(s) for s in getattr(result, "series", [])))
print("REASONS", [s.reason for s in result.skipped])
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("PEAK_MB", peak_kb / 1024)
'''


def _ct_small_bytes() -> bytes:
    return Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()


def _with_private_data(body: bytes) -> bytes:
    """CT_small with ``body`` (encoded private elements) inserted before the patient's name."""
    raw = _ct_small_bytes()
    at = raw.index(PATIENT_NAME)
    return raw[:at] + body + raw[at:]


def _nested_sequences(depth: int, defined: bool) -> bytes:
    sequence = struct.pack("<HH", 0x0009, 0x1010) + b"SQ\0\0"
    if not defined:
        return ((sequence + b"\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff") * depth
                + (b"\xfe\xff\x0d\xe0\0\0\0\0" + b"\xfe\xff\xdd\xe0\0\0\0\0") * depth)
    body = b""
    for _ in range(depth):
        item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body
        body = sequence + struct.pack("<I", len(item)) + item
    return body


def _folder_with_good_slices(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        ds = make.read("CT_small.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{i}"
        ds.ImagePositionPatient = [0, 0, 5.0 * i]
        ds.save_as(folder / f"good{i}.dcm")
    return folder


def _measured(path: Path) -> tuple[int, list[str], float]:
    run = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]  # a crash of the process is -11, an abort -6
    out = run.stdout
    slices = int(out.split("SLICES ", 1)[1].split()[0])
    reasons = eval(out.split("REASONS ", 1)[1].split("\n", 1)[0])  # noqa: S307 - our own script's repr of a list
    return slices, reasons, float(out.rsplit("PEAK_MB", 1)[1])


def test_the_nesting_walk_keeps_deep_sequences_from_gdcm_and_passes_real_ones(tmp_path):
    for depth, defined in ((MAX_NESTING // 2, True), (MAX_NESTING // 2, False)):
        path = tmp_path / f"shallow_{defined}.dcm"
        path.write_bytes(_with_private_data(_nested_sequences(depth, defined)))
        assert lengths_fit(str(path)), (depth, defined)
    for defined in (True, False):
        path = tmp_path / f"deep_{defined}.dcm"
        path.write_bytes(_with_private_data(_nested_sequences(MAX_NESTING + 2, defined)))
        assert not lengths_fit(str(path)), defined


def test_sequences_nested_ten_thousand_deep_do_not_crash_the_process(tmp_path):
    """GDCM's scanner parses sequences recursively: a 0.5 MB file nested 10,000 deep took the viewer,
    info and triage down with a segmentation fault."""
    for defined in (True, False):
        folder = _folder_with_good_slices(tmp_path / f"defined_{defined}")
        (folder / "deep.dcm").write_bytes(_with_private_data(_nested_sequences(10_000, defined)))
        slices, reasons, _ = _measured(folder)
        assert slices >= 3
        assert all("nest too deeply" in reason for reason in reasons), reasons


def test_a_huge_value_in_a_sparse_file_costs_no_memory(tmp_path):
    """A 4 GB private OB element in a sparse file (1 MB on disk): GDCM's scanner read it, 4.3 GB."""
    folder = _folder_with_good_slices(tmp_path / "sparse")
    raw = _ct_small_bytes()
    at, length = raw.index(PATIENT_NAME), 0xFFFFFFF0
    with open(folder / "huge.dcm", "wb") as f:
        f.write(raw[:at] + struct.pack("<HH", 0x0009, 0x1010) + b"OB\0\0" + struct.pack("<I", length))
        f.seek(length, 1)  # a hole: no disk space, and no memory unless something reads it
        f.write(raw[at:])
    assert not lengths_fit(str(folder / "huge.dcm"))
    slices, _, peak_mb = _measured(folder)
    assert slices == 4 and peak_mb < 1024, peak_mb


def test_many_values_under_the_cap_count_together(tmp_path):
    """A third tester: 250 private values of 15 MB each (each under the 16 MB cap) took 3.8 GB in GDCM."""
    def values(n: int, size: int) -> bytes:
        return b"".join(struct.pack("<HH", 0x0009, 0x1010 + i) + b"OB\0\0" + struct.pack("<I", size) + bytes(size)
                        for i in range(n))

    one, many = tmp_path / "one.dcm", tmp_path / "many.dcm"
    one.write_bytes(_with_private_data(values(1, 4 * 2**20)))
    many.write_bytes(_with_private_data(values(5, 4 * 2**20)))
    assert lengths_fit(str(one)) and not lengths_fit(str(many))


def test_a_deflate_bomb_is_refused_before_it_is_inflated(tmp_path):
    """A 1 MB Deflated Explicit VR file of zeros: pydicom inflates the whole data set into memory (6 GB for
    the tester's 6 MB file)."""
    folder = _folder_with_good_slices(tmp_path / "bomb")
    ds = make.read("CT_small.dcm")
    meta = pydicom.dataset.FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    buffer = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_file_meta_info(buffer, meta, enforce_standard=True)
    zeros = MAX_INFLATED + 2**20
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [deflate.compress(struct.pack("<HH", 0x0009, 0x1010) + b"OB\0\0" + struct.pack("<I", zeros))]
    chunk = bytes(16 * 2**20)
    for _ in range(zeros // len(chunk)):
        body.append(deflate.compress(chunk))
    body += [deflate.compress(bytes(zeros % len(chunk))), deflate.flush()]
    (folder / "bomb.dcm").write_bytes(b"\0" * 128 + b"DICM" + buffer.getvalue() + b"".join(body))
    slices, reasons, peak_mb = _measured(folder)
    assert slices == 3 and peak_mb < 400, peak_mb
    assert reasons == [f"a deflated DICOM file that inflates to more than {MAX_INFLATED // 2**20} MB "
                       "(a CT slice needs a few MB)"]


def test_a_deflated_ct_slice_still_loads(tmp_path):
    ds = make.read("CT_small.dcm")
    make.save_with_syntax(ds, tmp_path / "deflated.dcm", pydicom.uid.DeflatedExplicitVRLittleEndian)
    result = ich_viewer.load(tmp_path)
    assert len(result.series) == 1 and not result.skipped


def _dicomdir_with_a_loop(folder: Path, into_the_item: int = 0) -> Path:
    """A DICOMDIR whose last image record's "next" is the first image record (or ``into_the_item`` bytes into it)."""
    fileset = FileSet()
    for i in range(2):
        ds = make.read("CT_small.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.78.{i}"
        fileset.add(ds)
    fileset.write(folder)
    path = folder / "DICOMDIR"
    raw = bytearray(path.read_bytes())
    images = [r for r in pydicom.dcmread(path).DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    last = images[-1].seq_item_tell
    assert raw[last + 8:last + 14] == b"\x04\x00\x00\x14UL"  # the item's first element: the next record's offset
    raw[last + 16:last + 20] = struct.pack("<I", images[0].seq_item_tell + into_the_item)
    path.write_bytes(bytes(raw))
    return path


def test_a_dicomdir_whose_records_loop_is_refused_not_followed_for_ever(tmp_path):
    path = _dicomdir_with_a_loop(tmp_path / "cd")
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_load_or_error(path)), daemon=True)
    worker.start()
    worker.join(60)
    assert outcome, "the loader was still following the DICOMDIR's records after 60 s"
    assert "its records link back to each other in a loop" in str(outcome[0])


def test_a_dicomdir_record_pointing_where_no_record_is_gets_a_sentence(tmp_path):
    """A third tester: an offset into the middle of a record read "unreadable DICOMDIR (KeyError 1032)"."""
    outcome = _load_or_error(_dicomdir_with_a_loop(tmp_path / "cd", into_the_item=8))
    assert "one of its records points to a place in the file where no record is" in str(outcome)
    assert "KeyError" not in str(outcome)


def _load_or_error(path: Path):
    try:
        return ich_viewer.load(path)
    except NoImagesFoundError as exc:
        return exc


def test_a_folder_tree_deeper_than_the_recursion_limit_is_walked(tmp_path):
    """1,000 nested folders stopped the whole open with a RecursionError (Python 3.11's os.walk recurses),
    the good slices at the top included."""
    folder = _folder_with_good_slices(tmp_path / "top")
    made = [folder]
    try:
        for _ in range(sys.getrecursionlimit() + 100):  # one at a time: mkdir(parents=True) recurses too
            made.append(made[-1] / "d")
            made[-1].mkdir()
        ds = make.read("CT_small.dcm")
        ds.ImagePositionPatient = [0, 0, 15.0]
        ds.save_as(made[-1] / "deepest.dcm")
        (folder / ".hidden").mkdir()
        ds.save_as(folder / ".hidden" / "not_read.dcm")
        result = ich_viewer.load(folder)
        assert [len(s) for s in result.series] == [4] and not result.skipped
    finally:  # from the bottom up: shutil.rmtree (and so pytest's clean-up of old runs) recurses as well
        (made[-1] / "deepest.dcm").unlink(missing_ok=True)
        for level in reversed(made[1:]):
            if level.exists():
                level.rmdir()
