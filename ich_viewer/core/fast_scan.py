"""The fast path of the header scan: GDCM's C++ scanner reads the scan's tags from many files at once.

pydicom needs ~1.1 ms per CT header (it builds a Dataset and converts every value in Python);
``gdcm.Scanner`` reads the same tags of a 238-file series about 3x faster, which is what puts the
first slice on screen in well under 0.3 s. It only *vouches* for the plain case: a single-frame CT
image in a Part-10 file, an ASCII header, a transfer syntax other than deflate and pixel data
that ends the file intact. Every other file (zip members, multi-frame, deflate, other modalities, odd
character sets, truncation, anything GDCM cannot read) goes through pydicom's exact scan in
:mod:`~ich_viewer.core.dicom_io`, which gives the one-line skip reasons.
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
import zlib
from typing import Iterable

from pydicom import uid as dicom_uid
from pydicom.datadict import dictionary_VR, tag_for_keyword

try:  # python-gdcm is a runtime dependency; without it every file takes the pydicom path
    import gdcm
except ImportError:  # pragma: no cover - exercised only in broken installs
    gdcm = None
else:  # GDCM's own warnings go to stderr and name files, whose names may carry patients' names
    gdcm.Trace.WarningOff()
    gdcm.Trace.ErrorOff()

__all__ = ["ScannedHeader", "scan_headers"]

TRANSFER_SYNTAX_TAG = (0x0002, 0x0010)
_NUMBER_VRS = {"DS": float, "IS": int, "US": int, "SS": int, "UL": int, "SL": int, "FL": float, "FD": float,
               "US or SS": int}
#: An encapsulated pixel data element ends with an empty sequence delimiter item.
_SEQUENCE_DELIMITER = {True: struct.pack("<HHL", 0xFFFE, 0xE0DD, 0), False: struct.pack(">HHL", 0xFFFE, 0xE0DD, 0)}
_PLAIN_CHARSETS = {"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"}  # identical to ASCII on ASCII text


class ScannedHeader:
    """The scan's tags of one file as pydicom would give them (``get``, ``in``, ``file_meta``)."""

    def __init__(self, values: dict[str, str], transfer_syntax: str):
        self._values = values
        self._parsed: dict = {}  # the loader reads each value several times (checks, geometry, grouping)
        self.file_meta = {"TransferSyntaxUID": dicom_uid.UID(transfer_syntax)}
        self.is_implicit_VR = self.file_meta["TransferSyntaxUID"].is_implicit_VR

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._values

    def get(self, keyword: str, default=None):
        """The value as pydicom would give it; an empty value is absent, and a number that does not parse
        stays a string, for :mod:`~ich_viewer.core.header_checks` to refuse with the tag's name."""
        if keyword not in self._parsed:
            raw = self._values.get(keyword)
            if raw is None or not raw.strip():
                self._parsed[keyword] = None
            else:
                convert = _converter(keyword)
                parts = [_convert(convert, p.strip()) for p in raw.split("\\")]
                self._parsed[keyword] = parts if len(parts) > 1 else parts[0]
        value = self._parsed[keyword]
        return default if value is None else value


@functools.lru_cache(maxsize=None)
def _converter(keyword: str):
    return _NUMBER_VRS.get(dictionary_VR(keyword), str)


def _convert(convert, text: str):
    try:
        return convert(text)
    except (TypeError, ValueError, OverflowError):
        return text


def scan_headers(paths: Iterable[str], keywords: list[str]) -> dict[str, ScannedHeader]:
    """``{path: header}`` for the files this fast path vouches for (see the module doc); others are absent."""
    # GDCM allocates whatever an element's length claims (a corrupt length took 4-5 GB); only files whose
    # lengths all fit inside them are handed to it, the rest take pydicom's path (66 MB on the same file).
    # GDCM's binding takes only names that are valid UTF-8: a Latin-1 name from an old CD (held by Python as
    # surrogate escapes) made Scan raise for the whole folder. Such files take pydicom's path too.
    paths = [path for path in paths if _utf8_name(path) and lengths_fit(path)]
    if gdcm is None or not paths:
        return {}
    keywords = [k for k in keywords if not k.endswith("Sequence")]
    tags = {k: gdcm.Tag(*divmod(tag_for_keyword(k), 0x10000)) for k in keywords}
    ts_tag = gdcm.Tag(*TRANSFER_SYNTAX_TAG)
    scanner = gdcm.Scanner()
    for tag in (*tags.values(), ts_tag):
        scanner.AddTag(tag)
    try:
        if not scanner.Scan(paths):
            return {}
    except Exception:  # noqa: BLE001 - the fast path is an optimisation: any refusal leaves pydicom's path
        return {}
    out = {}
    for path in paths:
        try:
            header = _vouched(scanner, path, tags, ts_tag)
        except Exception:  # noqa: BLE001 - anything odd is for pydicom's path, which gives the reason
            header = None
        if header is not None:
            out[path] = header
    return out


def _utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _vouched(scanner, path: str, tags: dict, ts_tag) -> ScannedHeader | None:
    if not scanner.IsKey(path):
        return None
    transfer_syntax = (scanner.GetValue(path, ts_tag) or "").strip("\x00 ")
    if not transfer_syntax or not dicom_uid.UID(transfer_syntax).is_transfer_syntax:
        return None
    values = {}
    for keyword, tag in tags.items():
        value = scanner.GetValue(path, tag)
        if value is not None:
            values[keyword] = value.rstrip("\x00 ")
    header = ScannedHeader(values, transfer_syntax)
    return header if _plain_ct(header) and _pixels_intact(path, header) else None


def _plain_ct(header: ScannedHeader) -> bool:
    """A single-frame, single-sample CT image with ASCII text, not deflated (the caller checks decoders)."""
    values = header._values
    if values.get("Modality") != "CT" or not all(v.isascii() for v in values.values()):
        return False
    if values.get("SpecificCharacterSet", "") not in _PLAIN_CHARSETS:
        return False
    if "LOCALIZER" in values.get("ImageType", "").upper() or "Rows" not in values or "Columns" not in values:
        return False
    if header.get("SamplesPerPixel", 1) != 1 or header.get("NumberOfFrames", 1) != 1:
        return False
    return header.file_meta["TransferSyntaxUID"] != dicom_uid.DeflatedExplicitVRLittleEndian


def _pixels_intact(path: str, header: ScannedHeader) -> bool:
    """Pixel data is the file's last element and complete: the encapsulated sequence is closed, or
    the native element's header sits exactly ``length`` bytes before the end with that length."""
    tsuid = header.file_meta["TransferSyntaxUID"]
    little = tsuid.is_little_endian
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if tsuid.is_compressed:
                f.seek(max(size - 8, 0))
                return f.read(8) == _SEQUENCE_DELIMITER[little]
            length = header.get("Rows") * header.get("Columns") * header.get("BitsAllocated", 16) // 8
            length += length % 2
            head = 8 if tsuid.is_implicit_VR else 12
            if size < length + head:
                return False
            f.seek(size - length - head)
            element = f.read(head)
    except (OSError, TypeError, ValueError):
        return False
    endian = "<" if little else ">"
    if struct.unpack(endian + "HH", element[:4]) != (0x7FE0, 0x0010):
        return False
    stored = struct.unpack(endian + "L", element[-4:])[0]
    return stored == length and (tsuid.is_implicit_VR or element[4:6] in (b"OW", b"OB"))


# --------------------------------------------------------------------------- element lengths

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH",
              b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_UNDEFINED = 0xFFFFFFFF
_UNPACK = {little: tuple(struct.Struct(("<" if little else ">") + f).unpack_from for f in ("HH", "L", "H"))
           for little in (True, False)}
_PIXEL_DATA = (0x7FE0, 0x0010)
_ITEM = {True: b"\xfe\xff\x00\xe0", False: b"\xff\xfe\xe0\x00"}
MAX_NESTING = 32  # sequences within items: real CT headers nest a few levels
MAX_HEADER_VALUE = 16 * 2**20  # the values before the pixel data, all together: private blocks are kilobytes


def lengths_fit(path: str) -> bool:
    """A Part-10 file whose every element, up to the pixel data, has a known VR and a length that fits in
    the file. Walks element headers only (~0.1 ms a CT header): sequences and items are walked into, values
    skipped. False means "not for GDCM", not "broken": pydicom's scan then decides."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[128:132] != b"DICM":
                return False
            meta_end, syntax = _walk(buf, 132, explicit=True, little=True, stop_group=0x0002)
            if meta_end is None or not syntax:
                return False
            tsuid = dicom_uid.UID(syntax)
            if not tsuid.is_transfer_syntax or tsuid.is_deflated:
                return False
            end, _ = _walk(buf, meta_end, explicit=not tsuid.is_implicit_VR, little=tsuid.is_little_endian)
            return end is not None
    except (OSError, ValueError):
        return False


def _walk(buf, pos: int, explicit: bool, little: bool, stop_group: int | None = None) -> tuple[int | None, str]:
    """Where the walk stopped (the pixel data, the end of group ``stop_group``, or the end of the file),
    or None when an element does not fit or sequences nest deeper than ``MAX_NESTING``; and the transfer
    syntax UID if the walk passed it."""
    end = len(buf)
    tag, u32, u16 = _UNPACK[little]
    syntax = ""
    item = _ITEM[little]
    # The sequences and items the walk is inside: each one's end, or None until its delimiter (undefined length).
    # GDCM parses nested sequences recursively: 7,000 levels (a 0.5 MB file) crashed the process.
    open_ends: list[int | None] = []
    values = 0  # bytes of the values walked over
    while pos + 8 <= end:
        while open_ends and open_ends[-1] is not None and pos >= open_ends[-1]:
            open_ends.pop()
        if len(open_ends) > MAX_NESTING:
            return None, syntax
        group, element = tag(buf, pos)
        if (group, element) == _PIXEL_DATA or (stop_group is not None and group != stop_group):
            return pos, syntax
        if group == 0xFFFE:  # items and delimiters: no VR, 4-byte length; an item's content is walked into
            length, pos = u32(buf, pos + 4)[0], pos + 8
            if element == 0xE000:
                open_ends.append(None if length == _UNDEFINED else pos + length)
            elif open_ends and open_ends[-1] is None:  # an item's or a sequence's delimiter
                open_ends.pop()
            continue
        if explicit:
            vr = buf[pos + 4:pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    return None, syntax
                length, pos = u32(buf, pos + 8)[0], pos + 12
                if length != _UNDEFINED and length > end - pos:
                    return None, syntax
                if vr == b"SQ" or length == _UNDEFINED:  # a sequence's items are walked into
                    open_ends.append(None if length == _UNDEFINED else pos + length)
                    continue
            elif vr in _SHORT_VRS:
                length, pos = u16(buf, pos + 6)[0], pos + 8
            else:
                return None, syntax  # an unknown VR: GDCM would guess how long the length is
        else:
            length, pos = u32(buf, pos + 4)[0], pos + 8
            if length == _UNDEFINED or (length >= 8 and buf[pos:pos + 4] == item):  # a sequence, as GDCM reads it
                open_ends.append(None if length == _UNDEFINED else pos + length)
                continue
        if length > end - pos:
            return None, syntax
        values += length  # GDCM reads every value: one of 4 GB in a sparse file took 4 GB, 250 of 15 MB 3.8 GB
        if values > MAX_HEADER_VALUE:
            return None, syntax
        if (group, element) == TRANSFER_SYNTAX_TAG:
            syntax = bytes(buf[pos:pos + length]).decode("ascii", "replace").strip("\x00 ")
        pos += length
    return (pos if pos == end else None), syntax


# --------------------------------------------------------------------------- deflated files

MAX_INFLATED = 600 * 2**20  # as a zip member: more than any CT slice's header and pixels
_DEFLATED = dicom_uid.DeflatedExplicitVRLittleEndian.encode()


def inflates_too_far(fp) -> bool:
    """A Deflated Explicit VR file whose data set inflates past ``MAX_INFLATED``: pydicom inflates it whole
    into memory, so a 6 MB file of zeros took 6 GB. Counted in a stream, 16 MB at a time; ``fp`` is left
    where it was. Any other file: False."""
    start = fp.tell()
    try:
        head = fp.read(8192)
        if _DEFLATED not in head or head[128:132] != b"DICM":
            return False
        meta_end, _ = _walk(head, 132, explicit=True, little=True, stop_group=0x0002)
        if meta_end is None:
            return False  # pydicom's reading of the header decides
        fp.seek(start + meta_end)
        inflate, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while not inflate.eof and (data := fp.read(2**20)):
            while data and not inflate.eof:
                total += len(inflate.decompress(data, 16 * 2**20))
                if total > MAX_INFLATED:
                    return True
                data = inflate.unconsumed_tail
        return False
    except zlib.error:
        return False  # not a deflate stream after all: pydicom says what it is
    finally:
        fp.seek(start)
