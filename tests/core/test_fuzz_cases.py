"""Fixed fuzz cases: a mutated real file among good slices must never cost the good slices.

Every case is a folder of one mutated real file and three good slices made from the same real
pixel stream (``tests/mutations.py``, the library ``bench/fuzz_load.py`` draws thousands of cases
from). ``ich_viewer.load`` must return the good slices, with the mutated file loaded or skipped with
a reason (or raise nothing but an IchViewerError); decoding must finish, the good slices must decode,
and every decoded slice and the series geometry must be finite. ``mutations.examine`` does the
checking; a failure message names the mutation, so ``bench/fuzz_load.py --only`` is not needed to
read it.

The named cases are the ones an outside tester reported and the fuzz harness found; the numbered
ones are fixed draws (pydicom's files always run, CQ500 / RSNA slices when ../shared/data is there).
A case runs in-process when its mutated file declares an uncompressed transfer syntax (pydicom reads
those pixels with numpy). Any other case may reach a native decoder that can kill the interpreter
(GDCM aborted on colour JPEG 2000; imagecodecs segfaults on a JPEG Lossless frame without a Huffman
table), so it runs in a forked child with a time limit and an address-space cap. In-process cases run
with the address space capped too, so a runaway allocation is a MemoryError, not an exhausted machine.
"""

from __future__ import annotations

import dataclasses
import contextlib
import resource
from pathlib import Path

import pytest

from tests import mutations as M
from tests.conftest import SHARED_DATA

#: Outcomes a case may have (``typed``: load raised an IchViewerError, which the contract allows).
ALLOWED = {"ok_loaded", "ok_skipped", "ok_decode_error", "typed"}


def _spec(name: str, **kw) -> M.SeedSpec:
    return next(s for s in M.PYDICOM_SEEDS if s.name == name and all(getattr(s, k) == v for k, v in kw.items()))


@contextlib.contextmanager
def _bounded_address_space(extra: int = 2 * 2**30):
    """While a case runs in-process, the address space may grow by ``extra`` bytes (four small slices
    need a few MB): a runaway allocation is a MemoryError, not an exhausted machine. Restored after
    the case, so pytest's own reporting never runs under the cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    held = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmSize:"))
    cap = held + extra if hard == resource.RLIM_INFINITY else min(held + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


#: A case takes well under a second; this much means a decoder is grinding (and may hold the GIL, which
#: a stall check in the waiting thread cannot see), with room for a loaded CI machine.
SLOW_S = 10.0

def run(folder: Path, case_name: str, good: list[str]) -> dict:
    """In-process for uncompressed files, else in a forked child (see the module doc)."""
    if M.declared_syntax((folder / case_name).read_bytes()) in M.NATIVE_SYNTAXES:
        with _bounded_address_space():
            return M.examine(folder, case_name, good, timeout=60, stall=5, slow=SLOW_S)
    return M.examine_forked(folder, case_name, good, time_limit=6 * SLOW_S, address_space=2 * 2**30,
                            stall=10, slow=SLOW_S)


def check(label: str, detail: str, record: dict) -> None:
    assert record["outcome"] in ALLOWED, (
        f"{label} ({detail}) -> {record['outcome']}: {record['message']}\n{record.get('traceback', '')}"
    )


# --------------------------------------------------------------------------- named cases from the report


def _fragment_cut(fraction: float):
    def cut(data: bytes) -> bytes:
        frag = M.parse(data).fragments[1]
        return M.replace_fragment(data, 1, data[frag.value:frag.value + int(frag.length * fraction)])
    return cut


def _fragment_fill(byte: int, keep: int = 64):
    def fill(data: bytes) -> bytes:
        frag = M.parse(data).fragments[1]
        content = data[frag.value:frag.value + keep] + bytes([byte]) * (frag.length - keep)
        return data[:frag.value] + content + data[frag.end:]
    return fill


def _length(keyword: str, value: int):
    def corrupt(data: bytes) -> bytes:
        return M.set_length(data, M.parse(data).find(M.tag_of(keyword)), value)
    return corrupt


def _vr(keyword: str, vr: bytes):
    def corrupt(data: bytes) -> bytes:
        element = M.parse(data).find(M.tag_of(keyword))
        return data[:element.start + 4] + vr + data[element.start + 6:]
    return corrupt


def _set(**values):
    def edit(data: bytes) -> bytes:
        for keyword, value in values.items():
            data = M.set_value(data, keyword, value)
        return data
    return edit


def _size(rows: int, columns: int):
    return lambda data: M.set_value(M.set_value(data, "Rows", M.pack("US", [rows])), "Columns", M.pack("US", [columns]))


def _codec_field(site: str, value: bytes):
    """Overwrite one codec header field (see mutations._codec_sites) in the first frame."""
    def edit(data: bytes) -> bytes:
        parsed = M.parse(data)
        frag = parsed.fragments[1]
        offset, size = M._codec_sites(data[frag.value:frag.end], parsed.syntax)[site]
        at = frag.value + offset
        return data[:at] + value + data[at + len(value):]
    return edit


CT, J2KR, J2KI, RLE_MR = "CT_small.dcm", "693_J2KR.dcm", "693_J2KI.dcm", "MR_small_RLE.dcm"
RLE_693 = dict(reencode="1.2.840.10008.1.2.5")
JLS_693 = dict(reencode="1.2.840.10008.1.2.4.80")
# (id, seed file, seed options, edit, good slices in the same series)
NAMED = [
    ("j2k-photometric-RGB", J2KR, {}, _set(PhotometricInterpretation=b"RGB"), True),
    ("j2k-photometric-YBR_FULL", J2KR, {}, _set(PhotometricInterpretation=b"YBR_FULL"), True),
    ("j2k-YBR_ICT-3-samples", J2KI, {}, _set(PhotometricInterpretation=b"YBR_ICT", SamplesPerPixel=b"\x03\x00"), False),
    ("j2k-codestream-3-components", J2KR, {}, _codec_field("j2k Csiz", b"\x00\x03"), True),
    ("rle-runs-overflow-MR", RLE_MR, {}, _fragment_fill(0x81), True),
    ("rle-runs-overflow-693", "693_UNCR.dcm", RLE_693, _fragment_fill(0x81), True),
    ("rle-header-zeroed", RLE_MR, {}, _fragment_fill(0x00, keep=0), True),
    ("frames-2147483647-j2k", J2KR, {}, _set(NumberOfFrames=b"2147483647"), True),
    ("frames-2147483647-native", CT, {}, _set(NumberOfFrames=b"2147483647"), False),
    ("frames-minus-1", CT, {}, _set(NumberOfFrames=b"-1"), True),
    ("frames-minus-1-j2k", J2KR, {}, _set(NumberOfFrames=b"-1"), True),
    ("frames-empty", CT, {}, _set(NumberOfFrames=b""), True),
    ("instance-number-empty", CT, {}, _set(InstanceNumber=b""), True),
    ("series-number-empty", CT, {}, _set(SeriesNumber=b" "), True),
    ("position-2-values", CT, {}, _set(ImagePositionPatient=b"1\\2"), True),
    ("position-4-values", CT, {}, _set(ImagePositionPatient=b"1\\2\\3\\4"), True),
    ("position-nan", CT, {}, _set(ImagePositionPatient=b"nan\\0\\0"), True),
    ("orientation-3-values", CT, {}, _set(ImageOrientationPatient=b"1\\0\\0"), True),
    ("orientation-nan", CT, {}, _set(ImageOrientationPatient=b"nan\\0\\0\\0\\1\\0"), True),
    ("orientation-nan-alone", CT, {}, _set(ImageOrientationPatient=b"nan\\0\\0\\0\\1\\0"), False),
    ("spacing-nan-alone", CT, {}, _set(PixelSpacing=b"nan\\nan"), False),
    ("syntax-garbage", CT, {}, _set(TransferSyntaxUID=b"garbage"), True),
    ("syntax-binary", CT, {}, _set(TransferSyntaxUID=b"\xff" * 8), True),
    ("syntax-j2k-on-native", CT, {}, _set(TransferSyntaxUID=b"1.2.840.10008.1.2.4.90"), True),
    ("syntax-big-endian-on-little", CT, {}, _set(TransferSyntaxUID=b"1.2.840.10008.1.2.2"), True),
    ("slope-nan", CT, {}, _set(RescaleSlope=b"nan"), True),
    ("slope-inf-alone", CT, {}, _set(RescaleSlope=b"inf"), False),
    ("intercept-minus-inf", CT, {}, _set(RescaleIntercept=b"-inf"), True),
    ("slope-1e309", CT, {}, _set(RescaleSlope=b"1e309"), True),
    ("slope-1e30-alone", CT, {}, _set(RescaleSlope=b"1e30"), False),
    ("size-65535x65535-alone", CT, {}, _size(65535, 65535), False),
    ("size-65535x65535", CT, {}, _size(65535, 65535), True),
    ("size-rows-plus-1-alone", CT, {}, _size(129, 128), False),
    ("size-half-alone", CT, {}, _size(64, 64), False),
    ("size-half-j2k-alone", J2KR, {}, _size(256, 256), False),
    ("jpeg-lossless-fragment-cut-half", "JPEG-LL.dcm", {}, _fragment_cut(0.5), True),
    ("jpeg-lossless-fragment-cut-99pc", "JPEG-LL.dcm", {}, _fragment_cut(0.99), True),
    ("jpeg-lossless-file-truncated", "JPEG-LL.dcm", {}, lambda d: d[:int(len(d) * 0.6)], True),
    ("jpeg-ls-fragment-cut-10pc", "693_UNCR.dcm", JLS_693, _fragment_cut(0.1), True),
    ("jpeg-ls-fragment-cut-half", "693_UNCR.dcm", JLS_693, _fragment_cut(0.5), True),
    ("length-ffffffff-sop-class", CT, {}, _length("SOPClassUID", 0xFFFFFFFF), True),
    ("length-7fffffff-pixel-data", CT, {}, _length("PixelData", 0x7FFFFFFF), True),
    ("length-ffff-transfer-syntax", CT, {}, _length("TransferSyntaxUID", 0xFFFF), True),
    ("length-huge-group-length", CT, {}, _length("FileMetaInformationGroupLength", 0x7FFFFFFF), True),
    ("vr-unknown-rows", CT, {}, _vr("Rows", b"XX"), True),
    ("vr-unknown-series-number", CT, {}, _vr("SeriesNumber", b"XX"), True),
    ("vr-of-transfer-syntax-US", CT, {}, _vr("TransferSyntaxUID", b"US"), True),
    ("jpeg-lossless-no-huffman-table", "JPEG-LL.dcm", {}, _codec_field("jpeg DHT marker", b"\xef"), True),
    ("jpeg-lossless-frame-65535x65535", "JPEG-LL.dcm", {}, _codec_field("jpeg Y+X", b"\xff" * 4), True),
    ("jpeg-lossless-frame-65535-rows", "JPEG-LL.dcm", {}, _codec_field("jpeg Y", b"\xff\xff"), True),
    ("j2k-codestream-65535x65535", J2KR, {}, _codec_field("j2k Xsiz+Ysiz", b"\x00\x00\xff\xff" * 2), True),
    ("jpeg-ls-file-truncated", "MR_small_jpeg_ls_lossless.dcm", {}, lambda d: d[:4825], True),
    ("vr-unknown-patient-name", CT, {}, _vr("PatientName", b"\0\0"), True),
]


@pytest.mark.parametrize("label, seed, options, edit, same_series", NAMED, ids=[n[0] for n in NAMED])
def test_named_case(tmp_path, label, seed, options, edit, same_series):
    data = M.seed_bytes(_spec(seed, **options))
    # First in file order: the study's first file and the series' reference dataset (read after the scan).
    case_name, good = M.write_folder(tmp_path / "case", edit(data), M.siblings(data, 3, same_series), position=0)
    check(label, seed, run(tmp_path / "case", case_name, good))


def _shared_named(cq500: Path, rsna: Path):
    first_cq500 = sorted(cq500.glob("*.dcm"))[120]
    first_rsna = sorted(rsna.glob("*.dcm"))[0]
    return {
        "cq500-fragment-cut-half": (first_cq500, _fragment_cut(0.5)),
        "cq500-file-truncated": (first_cq500, lambda d: d[:len(d) * 2 // 3]),
        "cq500-vr-broken": (first_cq500, _vr("ImageType", b"\x01\x02")),
        "cq500-length-huge": (first_cq500, _length("SeriesDescription", 0xFFFF)),
        "rsna-slope-nan": (first_rsna, _set(RescaleSlope=b"nan")),
        "rsna-size-65535": (first_rsna, _size(65535, 65535)),
    }


@pytest.mark.shared_data
@pytest.mark.parametrize("label", ["cq500-fragment-cut-half", "cq500-file-truncated", "cq500-vr-broken",
                                   "cq500-length-huge", "rsna-slope-nan", "rsna-size-65535"])
def test_named_shared_case(tmp_path, cq500_dir, rsna_dir, label):
    path, edit = _shared_named(cq500_dir, rsna_dir)[label]
    data = path.read_bytes()
    case_name, good = M.write_folder(tmp_path / "case", edit(data), M.siblings(data, 3, True), position=0)
    check(label, path.name, run(tmp_path / "case", case_name, good))


# --------------------------------------------------------------------------- fixed draws

PYDICOM_CASES = [M.plan(seed, M.PYDICOM_SEEDS) for seed in range(240)]


@pytest.mark.parametrize("case", PYDICOM_CASES, ids=[c.id for c in PYDICOM_CASES])
def test_fuzz_case(tmp_path, case):
    case_name, good, used, detail = M.write_case(case, tmp_path / "case")
    check(f"{used} on {case.spec.label}", detail, run(tmp_path / "case", case_name, good))


_SHARED_SPECS = M.shared_seeds(SHARED_DATA) if SHARED_DATA.is_dir() else []
SHARED_CASES = [M.plan(seed, _SHARED_SPECS) for seed in range(100_000, 100_060)] if _SHARED_SPECS else []


@pytest.mark.shared_data
@pytest.mark.parametrize("case", SHARED_CASES or [None], ids=[c.id for c in SHARED_CASES] or ["no-shared-data"])
def test_fuzz_case_on_real_head_ct(tmp_path, shared_data, case):
    if case is None:  # the folder appeared after collection
        pytest.skip("shared data was absent when the cases were drawn")
    case = dataclasses.replace(case, spec=dataclasses.replace(case.spec, root=str(shared_data)))
    case_name, good, used, detail = M.write_case(case, tmp_path / "case")
    check(f"{used} on {case.spec.source}/{case.spec.name}", detail, run(tmp_path / "case", case_name, good))
