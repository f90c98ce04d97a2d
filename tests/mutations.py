"""Deterministic mutations of real DICOM files, for fuzzing the loader (tests and ``bench/fuzz_load.py``).

A mutator takes a file's bytes and a seeded :class:`random.Random` and returns ``(new bytes, detail)``;
``detail`` says what was changed (``RescaleSlope=b'nan'``) so a failure can be read without a debugger.
Three families, each mutator named ``family.what``:

* ``header.*``: structure-aware. A small walker (:func:`parse`) finds every element's byte offsets
  (file meta, body, sequence items, encapsulated fragments); :func:`set_value` splices in a hostile
  raw value with a consistent element header, so the rest of the file stays byte-identical and the
  loader really sees e.g. ``NumberOfFrames=-1`` rather than whatever pydicom would have written.
* ``bytes.*``: byte-level (bit flips, truncation, chunk overwrite, element length / tag corruption,
  duplicated or removed ranges), biased towards the header where most of the parsing happens.
* ``encaps.*``: compressed pixel data (JPEG Lossless, JPEG-LS, JPEG 2000, RLE): truncated or corrupt
  fragments, broken item structure, and codec headers (JPEG SOF, J2K SIZ, RLE segment table).

:func:`plan` picks a seed file and a mutator from an integer case seed (no I/O, so test ids can be
built at collection time); :func:`mutate` applies it; :func:`siblings` makes good neighbours of the
same real pixel stream; :func:`examine` loads a folder the way the viewer does and classifies the
outcome (shared by the fixed test cases and the harness).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import re
import resource
import select
import signal
import struct
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA, GROUP2_LENGTH = 0x7FE00010, 0x00020000
UNDEFINED = 0xFFFFFFFF
IMPLICIT, BIG_ENDIAN, DEFLATE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
#: Syntaxes whose pixels pydicom reads itself (numpy): no native decoder that could crash the process.
NATIVE_SYNTAXES = {IMPLICIT, "1.2.840.10008.1.2.1", BIG_ENDIAN, DEFLATE}


# --------------------------------------------------------------------------- parsing and splicing


@dataclass(frozen=True)
class Element:
    tag: int
    vr: bytes | None  # None: implicit VR, or an item / delimiter
    start: int  # first byte of the element header
    value: int  # first byte of the value
    length: int  # the stored length field (UNDEFINED for undefined lengths)
    end: int  # one past the element, delimiters included
    depth: int  # 0: top level; items and their contents are deeper
    little: bool

    @property
    def length_field(self) -> tuple[int, int]:
        """(offset, size) of the length field."""
        size = 2 if self.vr is not None and self.vr not in LONG_VRS else 4
        return self.value - size, size


@dataclass
class Parsed:
    syntax: str
    elements: list[Element]  # file order, parents before their contents
    fragments: list[Element]  # encapsulated pixel data items (the first is the offset table)
    meta_end: int
    body_parsed: bool  # False for deflated bodies (only the file meta was walked)

    def find(self, tag: int) -> Element | None:
        return next((e for e in self.elements if e.tag == tag and e.depth == 0), None)

    @property
    def header_end(self) -> int:
        pixels = self.find(PIXEL_DATA)
        return pixels.value if pixels is not None else self.meta_end + 4096


def parse(data: bytes) -> Parsed:
    """Walk a (valid) Part-10 file's elements; raises ValueError on bytes it cannot follow."""
    try:
        return _parse(data)
    except (struct.error, IndexError, RecursionError) as exc:
        raise ValueError(f"cannot walk this file: {exc}") from exc


def _parse(data: bytes) -> Parsed:
    pos = 132 if data[128:132] == b"DICM" else 0
    elements: list[Element] = []
    fragments: list[Element] = []
    meta_end = pos
    if data[pos:pos + 2] == b"\x02\x00":
        meta_end = _read(data, pos, len(data), 0, True, True, elements, fragments, group2=True)
    ts_el = next((e for e in elements if e.tag == 0x00020010), None)
    syntax = data[ts_el.value:ts_el.end].rstrip(b"\0 ").decode("ascii", "replace") if ts_el else IMPLICIT
    if syntax == DEFLATE:
        return Parsed(syntax, elements, fragments, meta_end, False)
    _read(data, meta_end, len(data), 0, syntax != BIG_ENDIAN, syntax != IMPLICIT, elements, fragments)
    return Parsed(syntax, elements, fragments, meta_end, True)


def _read(data, pos, end, depth, little, explicit, out, fragments, group2=False, in_item=False) -> int:
    e = "<" if little else ">"
    while pos + 8 <= end:
        group, number = struct.unpack(e + "HH", data[pos:pos + 4])
        tag = group << 16 | number
        if group2 and group != 2:
            return pos
        if tag == ITEM_END and in_item:
            return pos + 8
        if explicit and group != 0xFFFE:
            vr = data[pos + 4:pos + 6]
            if vr in LONG_VRS:
                length, value = struct.unpack(e + "L", data[pos + 8:pos + 12])[0], pos + 12
            else:
                length, value = struct.unpack(e + "H", data[pos + 6:pos + 8])[0], pos + 8
        else:
            vr, (length,), value = None, struct.unpack(e + "L", data[pos + 4:pos + 8]), pos + 8
        index = len(out)
        if length == UNDEFINED and tag == PIXEL_DATA:
            stop = _read_items(data, value, end, depth + 1, little, explicit, fragments, fragments, frags=True)
        elif length == UNDEFINED:
            stop = _read_items(data, value, end, depth + 1, little, explicit, out, fragments)
        else:
            stop = value + length
            if stop > end:
                raise ValueError(f"element ({group:04X},{number:04X}) runs past the end")
            if vr == b"SQ" or (vr is None and _dictionary_vr(tag) == "SQ"):
                _read_items(data, value, stop, depth + 1, little, explicit, out, fragments)
        out.insert(index, Element(tag, vr, pos, value, length, stop, depth, little))
        pos = stop
    return pos


def _read_items(data, pos, end, depth, little, explicit, out, fragments, frags=False) -> int:
    e = "<" if little else ">"
    while pos + 8 <= end:
        group, number, length = struct.unpack(e + "HHL", data[pos:pos + 8])
        tag = group << 16 | number
        if tag == SEQ_END:
            return pos + 8
        if tag != ITEM:
            raise ValueError(f"expected an item at {pos}, found ({group:04X},{number:04X})")
        if length == UNDEFINED:
            stop = _read(data, pos + 8, end, depth + 1, little, explicit, out, fragments, in_item=True)
        else:
            stop = pos + 8 + length
            if not frags:
                _read(data, pos + 8, stop, depth + 1, little, explicit, out, fragments)
        out.append(Element(ITEM, None, pos, pos + 8, length, stop, depth, little))
        pos = stop
    return pos


@functools.lru_cache(maxsize=None)
def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def tag_of(keyword: str | int) -> int:
    if isinstance(keyword, int):
        return keyword
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def _encode(tag: int, vr: bytes | None, value: bytes, little: bool) -> bytes:
    e = "<" if little else ">"
    head = struct.pack(e + "HH", tag >> 16, tag & 0xFFFF)
    if vr is None:
        return head + struct.pack(e + "L", len(value)) + value
    if vr in LONG_VRS:
        return head + vr + b"\0\0" + struct.pack(e + "L", len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"{len(value)} bytes do not fit a {vr.decode()} element")
    return head + vr + struct.pack(e + "H", len(value)) + value


def _vr_for(tag: int, parsed: Parsed, existing: Element | None, vr: str | None) -> bytes | None:
    explicit = tag >> 16 == 2 or parsed.syntax != IMPLICIT
    if not explicit:
        return None
    if vr is not None:
        return vr.encode()
    if existing is not None and existing.vr is not None:
        return existing.vr
    return _dictionary_vr(tag).split(" or ")[0].encode()


def _fix_group_length(data: bytes) -> bytes:
    parsed = parse_meta(data)
    gl = parsed.find(GROUP2_LENGTH)
    if gl is None or gl.length != 4:
        return data
    return data[:gl.value] + struct.pack("<L", parsed.meta_end - gl.end) + data[gl.end:]


def parse_meta(data: bytes) -> Parsed:
    """Only the file meta group (what survives a change of transfer syntax)."""
    pos = 132 if data[128:132] == b"DICM" else 0
    elements: list[Element] = []
    end = pos
    if data[pos:pos + 2] == b"\x02\x00":
        end = _read(data, pos, len(data), 0, True, True, elements, [], group2=True)
    return Parsed("", elements, [], end, False)


def declared_syntax(data: bytes) -> str | None:
    """The transfer syntax UID a file's meta declares, or None if it has none or cannot be walked."""
    try:
        element = parse_meta(data).find(0x00020010)
    except ValueError:
        return None
    return None if element is None else data[element.value:element.end].rstrip(b"\0 ").decode("latin-1")


def set_value(data: bytes, keyword: str | int, value: bytes, vr: str | None = None, pad: bool = True) -> bytes:
    """``data`` with a top-level element's raw value replaced (or the element added), header consistent.

    ``pad`` keeps the value even-length as DICOM requires (odd lengths are a mutation of their own).
    """
    tag = tag_of(keyword)
    parsed = parse(data) if tag >> 16 != 2 else parse_meta(data)
    if tag >> 16 != 2 and not parsed.body_parsed:
        raise ValueError("the body is deflated: header elements cannot be spliced")
    existing = parsed.find(tag)
    raw_vr = _vr_for(tag, parsed, existing, vr)
    if pad and len(value) % 2:
        value += b"\0" if raw_vr in (b"UI", b"OB", b"UN", None) and tag != PIXEL_DATA else b" "
    little = tag >> 16 == 2 or parsed.syntax != BIG_ENDIAN
    encoded = _encode(tag, raw_vr, value, little)
    if existing is not None:
        out = data[:existing.start] + encoded + data[existing.end:]
    else:
        region = [e for e in parsed.elements if e.depth == 0 and (e.tag >> 16 == 2) == (tag >> 16 == 2)]
        after = next((e for e in region if e.tag > tag), None)
        at = after.start if after is not None else (region[-1].end if region else parsed.meta_end)
        out = data[:at] + encoded + data[at:]
    return _fix_group_length(out) if tag >> 16 == 2 else out


def delete(data: bytes, keyword: str | int) -> bytes:
    tag = tag_of(keyword)
    parsed = parse(data) if tag >> 16 != 2 else parse_meta(data)
    element = parsed.find(tag)
    if element is None:
        raise ValueError(f"no {keyword} to delete")
    out = data[:element.start] + data[element.end:]
    return _fix_group_length(out) if tag >> 16 == 2 else out


def get_value(data: bytes, keyword: str | int) -> bytes | None:
    tag = tag_of(keyword)
    element = (parse(data) if tag >> 16 != 2 else parse_meta(data)).find(tag)
    return None if element is None else data[element.value:element.end]


def pack(vr: str, values, little: bool = True) -> bytes:
    fmt = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}[vr]
    return struct.pack(("<" if little else ">") + fmt * len(values), *values)


def set_length(data: bytes, element: Element, length: int) -> bytes:
    """Overwrite an element's length field only (the value bytes stay where they are)."""
    at, size = element.length_field
    e = "<" if element.little else ">"
    return data[:at] + struct.pack(e + ("H" if size == 2 else "L"), length % (1 << 8 * size)) + data[at + size:]


def replace_fragment(data: bytes, index: int, content: bytes, pad: bool = True) -> bytes:
    """Replace one encapsulated item's content, with its item length updated."""
    frag = parse(data).fragments[index]
    if pad and len(content) % 2:
        content += b"\0"
    e = "<" if frag.little else ">"
    return data[:frag.start] + struct.pack(e + "HHL", 0xFFFE, 0xE000, len(content)) + content + data[frag.end:]


@contextlib.contextmanager
def _quiet_pydicom():
    """pydicom validates nothing while mutations are built (restored afterwards: tests share the process)."""
    reading, writing = pydicom_config.settings.reading_validation_mode, pydicom_config.settings.writing_validation_mode
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        yield
    finally:
        pydicom_config.settings.reading_validation_mode = reading
        pydicom_config.settings.writing_validation_mode = writing


def encode_dataset(ds, parsed: Parsed) -> bytes:
    """Elements of ``ds`` (e.g. a sequence built with pydicom) encoded as this file's body is."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = parsed.syntax != BIG_ENDIAN, parsed.syntax == IMPLICIT
    with _quiet_pydicom():
        write_dataset(fp, ds)
    return fp.getvalue()


# --------------------------------------------------------------------------- the mutators


Fn = Callable[[bytes, random.Random], "tuple[bytes, str]"]


@dataclass(frozen=True)
class Mutator:
    name: str
    fn: Fn
    needs: str  # "": any file; "body": a walkable body (not deflated); "encaps": compressed pixel data


MUTATORS: dict[str, Mutator] = {}


def _mutator(name: str, needs: str = "body"):
    def register(fn: Fn) -> Fn:
        MUTATORS[name] = Mutator(name, fn, needs)
        return fn
    return register


def _set_choice(keywords, values, vr=None, pad=True):
    """A header mutator: one of ``keywords`` gets one of ``values`` (raw bytes)."""
    def fn(data: bytes, rng: random.Random):
        keyword, value = rng.choice(keywords), rng.choice(values)
        return set_value(data, keyword, value, vr=vr, pad=pad), f"{keyword}={value[:40]!r}"
    return fn


BAD_IS = [b"", b" ", b"abc", b"1.5", b"1e400", b"-", b"99999999999999999999", b"+-1", b"\0\0", b"1\\2", b"0x10"]
BAD_DS = [b"", b"abc", b"1,5", b"1\\2\\3", b"--1", b"0x10", b"1e", b"\xff\xfe", b"nan", b"1e999"]
NONFINITE = [b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e309", b"-1e309", b"-nan"]
for _name, _keys, _values in [
    ("header.is_garbage", ["InstanceNumber", "SeriesNumber", "NumberOfFrames", "AcquisitionNumber"], BAD_IS),
    ("header.ds_garbage", ["RescaleSlope", "RescaleIntercept", "PixelSpacing", "SliceThickness", "WindowCenter",
                           "WindowWidth", "SliceLocation", "SpacingBetweenSlices"], BAD_DS),
    ("header.rescale_nonfinite", ["RescaleSlope", "RescaleIntercept"], NONFINITE),
    ("header.rescale_extreme", ["RescaleSlope", "RescaleIntercept"],
     [b"0", b"-1", b"1e30", b"-1e30", b"1e-30", b"65536", b"3.4e38", b"1.5", b"2147483648", b"-32768.5", b"1e20"]),
    ("header.position_bad", ["ImagePositionPatient"],
     [b"", b"1", b"1\\2", b"1\\2\\3\\4", b"1\\2\\3\\4\\5\\6", b"nan\\0\\0", b"0\\0\\inf", b"1e308\\1e308\\1e308",
      b"a\\b\\c", b"0\\0\\", b"\\\\"]),
    ("header.orientation_bad", ["ImageOrientationPatient"],
     [b"1\\0\\0", b"1\\0\\0\\0\\1", b"1\\0\\0\\0\\1\\0\\0", b"nan\\0\\0\\0\\1\\0", b"0\\0\\0\\0\\0\\0",
      b"1\\0\\0\\1\\0\\0", b"inf\\0\\0\\0\\1\\0", b"", b"1e308\\0\\0\\0\\1e308\\0", b"0\\0\\1\\0\\1\\0", b"a\\b\\c\\d\\e\\f"]),
    ("header.spacing_bad", ["PixelSpacing"],
     [b"", b"0.5", b"0.5\\0.5\\0.5", b"0\\0", b"-1\\-1", b"nan\\nan", b"inf\\1", b"1e308\\1e308", b"1e-308\\1e-308"]),
    ("header.frames_bad", ["NumberOfFrames"],
     [b"2147483647", b"-1", b"0", b"", b"99999", b"2", b"4294967296", b"1e9", b"-2147483648", b"3", b"65536"]),
    ("header.photometric_bad", ["PhotometricInterpretation"],
     [b"RGB", b"YBR_FULL", b"YBR_FULL_422", b"YBR_RCT", b"YBR_ICT", b"PALETTE COLOR", b"MONOCHROME1", b"",
      b"garbage", b"MONOCHROME2\\RGB"]),
    ("header.window_bad", ["WindowCenter", "WindowWidth"],
     [b"", b"nan", b"inf", b"0", b"-1", b"1e308", b"abc", b"40\\", b"\\", b"-inf\\nan"]),
    ("header.text_bad", ["PatientName", "StudyDescription", "SeriesDescription", "PatientID", "StudyDate"],
     [b"\xff\xfe\xfd", b"\x1b$B\x30\x21", b"A" * 65000, b"\0" * 10, b"=?", b"\\" * 100, b"\xc3("]),
    ("header.charset_bad", ["SpecificCharacterSet"],
     [b"ISO 2022 IR 87", b"GB18030", b"garbage", b"ISO_IR 192", b"\\\\", b"ISO 2022 IR 149\\ISO_IR 999", b""]),
    ("header.uid_bad", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
     [b"", b"\0", b"1" * 64, b"1." * 3000, b"\xff\xfe", b"ID_\\x", b" "]),
    ("header.modality_bad", ["Modality", "SOPClassUID"],
     [b"", b"ct", b"CT\\MR", b"C", b"\0", b"1.2.840.10008.5.1.4.1.1.2.1", b"1.2.840.10008.5.1.4.1.1.4", b"garbage"]),
    ("header.image_type_bad", ["ImageType"], [b"", b"LOCALIZER", b"ORIGINAL\\PRIMARY\\LOCALIZER", b"\\\\\\", b"\xff"]),
]:
    _mutator(_name)(_set_choice(_keys, _values))


SYNTAXES = [b"", b"garbage", b"1.2.3.4", b"1.2.840.10008.1.2.4.999", b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1",
            b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.51",
            b"1.2.840.10008.1.2.4.57", b"1.2.840.10008.1.2.4.70", b"1.2.840.10008.1.2.4.80", b"1.2.840.10008.1.2.4.90",
            b"1.2.840.10008.1.2.4.91", b"1.2.840.10008.1.2.4.201", b"1.2.840.10008.1.2.5", b"1.2.840.10008.1.2.4.100",
            b"1.2.840.10008.1.2.1\0\0\0", b"1.2.840.10008.1.2.4.70 ", b"\xff" * 8]
_mutator("header.syntax_bad", needs="")(_set_choice(["TransferSyntaxUID"], SYNTAXES))


@_mutator("header.size_bad")
def _size_bad(data, rng):
    parsed = parse(data)
    e = "<" if parsed.syntax != BIG_ENDIAN else ">"
    rows, cols = (struct.unpack(e + "H", (get_value(data, k) or b"\0\0")[:2])[0] for k in ("Rows", "Columns"))
    choices = {"0": (0, cols), "1x1": (1, 1), "65535x65535": (65535, 65535), "rows+1": (rows + 1, cols),
               "rows-1": (max(rows - 1, 0), cols), "double": (min(rows * 2, 65535), min(cols * 2, 65535)),
               "half": (rows // 2, cols // 2), "swapped": (cols, rows), "cols0": (rows, 0), "65535 rows": (65535, cols)}
    label = rng.choice(sorted(choices))
    new_rows, new_cols = choices[label]
    data = set_value(data, "Rows", pack("US", [new_rows], e == "<"))
    return set_value(data, "Columns", pack("US", [new_cols], e == "<")), f"Rows x Columns {rows}x{cols} -> {label}"


@_mutator("header.bits_bad")
def _bits_bad(data, rng):
    keyword, values = rng.choice([("BitsAllocated", [0, 1, 7, 8, 12, 24, 32, 64, 65535]),
                                  ("BitsStored", [0, 1, 8, 17, 32, 33, 65535]),
                                  ("HighBit", [0, 16, 31, 255, 65535]), ("PixelRepresentation", [0, 1, 2, 65535])])
    value = rng.choice(values)
    little = parse(data).syntax != BIG_ENDIAN
    return set_value(data, keyword, pack("US", [value], little)), f"{keyword}={value}"


@_mutator("header.samples_bad")
def _samples_bad(data, rng):
    value = rng.choice([0, 2, 3, 4, 65535])
    little = parse(data).syntax != BIG_ENDIAN
    data = set_value(data, "SamplesPerPixel", pack("US", [value], little))
    if rng.random() < 0.5:
        data = set_value(data, "PlanarConfiguration", pack("US", [rng.choice([0, 1, 7])], little))
        return data, f"SamplesPerPixel={value} with PlanarConfiguration"
    return data, f"SamplesPerPixel={value}"


@_mutator("header.padding_bad")
def _padding_bad(data, rng):
    keyword = rng.choice(["PixelPaddingValue", "PixelPaddingValue", "PixelPaddingRangeLimit"])
    value = rng.choice([b"", b"\x01", b"\x01\x02\x03", b"\xff\xff", b"\x00\x80", b"\x01\x02\x03\x04", b"\x30\xf8"])
    vr = rng.choice([None, "US", "SS", "OW", "UN"])
    return set_value(data, keyword, value, vr=vr, pad=False), f"{keyword}({vr or 'as is'})={value!r}"


@_mutator("header.delete")
def _delete(data, rng):
    keyword = rng.choice(["Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel",
                          "PhotometricInterpretation", "TransferSyntaxUID", "Modality", "SOPClassUID", "RescaleSlope",
                          "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "PixelData",
                          "SeriesInstanceUID", "SOPInstanceUID", "FileMetaInformationGroupLength"])
    return delete(data, keyword), f"deleted {keyword}"


@_mutator("header.vr_bad")
def _vr_bad(data, rng):
    parsed = parse(data)
    candidates = [e for e in parsed.elements if e.vr is not None]
    if not candidates:
        raise ValueError("implicit VR: no VR to corrupt")
    element = rng.choice(candidates)
    vr = rng.choice([b"UN", b"SQ", b"XX", b"\0\0", b"OB", b"US", b"DS", b"UT"])
    return data[:element.start + 4] + vr + data[element.start + 6:], f"VR of ({element.tag:08X}) -> {vr!r}"


@_mutator("header.functional_groups_bad")
def _functional_groups_bad(data, rng):
    from pydicom.dataset import Dataset

    def item(macro, **values):
        inner = Dataset()
        for k, v in values.items():
            inner.add_new(tag_for_keyword(k), _dictionary_vr(tag_for_keyword(k)), v)
        outer = Dataset()
        outer.add_new(tag_for_keyword(macro), "SQ", [inner])
        return outer

    choices = {
        "empty sequence": [],
        "empty item": [Dataset()],
        "spacing nan": [item("PixelMeasuresSequence", PixelSpacing="nan\\1")],
        "orientation 3 values": [item("PlaneOrientationSequence", ImageOrientationPatient="1\\0\\0")],
        "slope inf": [item("PixelValueTransformationSequence", RescaleSlope="inf", RescaleIntercept="0")],
        "position 2 values": [item("PlanePositionSequence", ImagePositionPatient="1\\2")],
        "empty macro": [item("PlanePositionSequence")],
    }
    keyword = rng.choice(["SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"])
    label = rng.choice(sorted(choices))
    ds = Dataset()
    ds.add_new(tag_for_keyword(keyword), "SQ", choices[label])
    parsed = parse(data)
    encoded = encode_dataset(ds, parsed)
    tag = tag_for_keyword(keyword)
    existing = parsed.find(tag)
    if existing is not None:
        return data[:existing.start] + encoded + data[existing.end:], f"{keyword}: {label}"
    after = next((e for e in parsed.elements if e.depth == 0 and e.tag > tag), None)
    at = after.start if after is not None else len(data)
    return data[:at] + encoded + data[at:], f"{keyword}: {label} (added)"


def _where(data: bytes, rng: random.Random) -> int:
    """A byte offset, 70% of the time in the header (where parsing happens)."""
    try:
        header_end = parse(data).header_end
    except ValueError:
        header_end = 2048
    limit = min(len(data), header_end + 16) if rng.random() < 0.7 else len(data)
    return rng.randrange(max(limit, 1))


@_mutator("bytes.bitflip", needs="")
def _bitflip(data, rng):
    out = bytearray(data)
    flips = rng.choice([1, 1, 2, 4, 8, 32])
    spots = [_where(data, rng) for _ in range(flips)]
    for spot in spots:
        out[spot] ^= 1 << rng.randrange(8)
    return bytes(out), f"{flips} bit(s) flipped at {sorted(spots)[:4]}"


@_mutator("bytes.truncate", needs="")
def _truncate(data, rng):
    kind = rng.choice(["header", "anywhere", "tail"])
    at = {"header": lambda: _where(data, rng), "anywhere": lambda: rng.randrange(len(data)),
          "tail": lambda: len(data) - rng.randint(1, 16)}[kind]()
    return data[:at], f"truncated at {at} of {len(data)} ({kind})"


@_mutator("bytes.overwrite", needs="")
def _overwrite(data, rng):
    at, size = _where(data, rng), rng.choice([1, 2, 4, 8, 16, 64])
    fill = rng.choice(["random", "zeros", "ff"])
    chunk = {"random": lambda: rng.randbytes(size), "zeros": lambda: b"\0" * size, "ff": lambda: b"\xff" * size}[fill]()
    return data[:at] + chunk + data[at + size:], f"{size} {fill} bytes at {at}"


@_mutator("bytes.length_corrupt")
def _length_corrupt(data, rng):
    parsed = parse(data)
    element = rng.choice(parsed.elements + parsed.fragments)
    _, size = element.length_field
    big = 0xFFFF if size == 2 else 0xFFFFFFFF
    choice = rng.choice([big, big - 1, 0x7FFFFFFF, 0x40000000, 0x10000000, element.length + 1,
                         element.length - 1, 0, element.length * 1000, element.length + 0x10000])
    return set_length(data, element, choice), f"length of ({element.tag:08X}) at {element.start}: {element.length} -> {choice % (big + 1)}"


@_mutator("bytes.tag_corrupt")
def _tag_corrupt(data, rng):
    parsed = parse(data)
    element = rng.choice(parsed.elements + parsed.fragments)
    tag = rng.choice([PIXEL_DATA, ITEM, SEQ_END, ITEM_END, 0x00020010, 0x00080000, 0x00280010, rng.getrandbits(32)])
    e = "<" if element.little else ">"
    new = struct.pack(e + "HH", tag >> 16, tag & 0xFFFF)
    return data[:element.start] + new + data[element.start + 4:], f"tag ({element.tag:08X}) at {element.start} -> ({tag:08X})"


def _boundaries(data: bytes) -> list[int]:
    try:
        parsed = parse(data)
        return sorted({e.start for e in parsed.elements + parsed.fragments} | {len(data)})
    except ValueError:
        return [0, len(data)]


@_mutator("bytes.duplicate_range", needs="")
def _duplicate_range(data, rng):
    marks = _boundaries(data)
    a = rng.choice(marks[:-1]) if rng.random() < 0.6 else _where(data, rng)
    b = min(len(data), a + rng.choice([1, 2, 8, 64, 512, 4096]))
    return data[:b] + data[a:b] + data[b:], f"bytes {a}:{b} duplicated"


@_mutator("bytes.remove_range", needs="")
def _remove_range(data, rng):
    marks = _boundaries(data)
    if rng.random() < 0.6 and len(marks) > 2:
        i = rng.randrange(len(marks) - 1)
        a, b = marks[i], marks[min(i + rng.choice([1, 1, 2]), len(marks) - 1)]
    else:
        a = _where(data, rng)
        b = min(len(data), a + rng.choice([1, 2, 8, 64, 512]))
    return data[:a] + data[b:], f"bytes {a}:{b} removed"


@_mutator("bytes.zero_tail", needs="")
def _zero_tail(data, rng):
    fraction = rng.choice([0.01, 0.1, 0.5])
    keep = int(len(data) * (1 - fraction))
    return data[:keep] + b"\0" * (len(data) - keep), f"last {fraction:.0%} zeroed"


@_mutator("bytes.append", needs="")
def _append(data, rng):
    kind = rng.choice(["random", "pixel element", "delimiters"])
    extra = {"random": lambda: rng.randbytes(rng.choice([1, 7, 1000])),
             "pixel element": lambda: struct.pack("<HHL", 0x7FE0, 0x0010, 0xFFFFFFF0) + b"\0" * 16,
             "delimiters": lambda: struct.pack("<HHL", 0xFFFE, 0xE0DD, 0) * 100}[kind]()
    return data + extra, f"appended {len(extra)} bytes ({kind})"


def _frame_fragment(parsed: Parsed, rng: random.Random) -> int:
    if len(parsed.fragments) < 2:
        raise ValueError("no encapsulated frames")
    return rng.randrange(1, len(parsed.fragments))


@_mutator("encaps.truncate", needs="encaps")
def _frag_truncate(data, rng):
    parsed = parse(data)
    index = _frame_fragment(parsed, rng)
    frag = parsed.fragments[index]
    keep = rng.choice([0, 2, 16, frag.length // 100, frag.length // 10, frag.length // 2, frag.length * 9 // 10,
                       frag.length - 2, frag.length - 4])
    content = data[frag.value:frag.value + max(keep, 0)]
    return replace_fragment(data, index, content), f"fragment {index} cut to {len(content)} of {frag.length} bytes"


@_mutator("encaps.overwrite", needs="encaps")
def _frag_overwrite(data, rng):
    parsed = parse(data)
    index = _frame_fragment(parsed, rng)
    frag = parsed.fragments[index]
    size = rng.choice([1, 4, 16, 256, 4096])
    at = frag.value + rng.randrange(max(frag.length - 1, 1))
    size = max(0, min(size, frag.end - at))
    chunk = rng.choice([rng.randbytes(size), b"\0" * size, b"\xff" * size])
    return data[:at] + chunk + data[at + size:], f"{size} bytes overwritten in fragment {index} at +{at - frag.value}"


@_mutator("encaps.bitflip", needs="encaps")
def _frag_bitflip(data, rng):
    parsed = parse(data)
    index = _frame_fragment(parsed, rng)
    frag = parsed.fragments[index]
    out = bytearray(data)
    head = rng.random() < 0.5  # codec headers sit at the start of the fragment
    spots = [frag.value + rng.randrange(min(frag.length, 256) if head else frag.length) for _ in range(rng.choice([1, 4, 16]))]
    for spot in spots:
        out[spot] ^= 1 << rng.randrange(8)
    return bytes(out), f"{len(spots)} bit(s) flipped in fragment {index} ({'header' if head else 'anywhere'})"


@_mutator("encaps.structure", needs="encaps")
def _frag_structure(data, rng):
    parsed = parse(data)
    frags = parsed.fragments
    first, last = frags[0], frags[-1]
    e = "<" if first.little else ">"
    kind = rng.choice(["no offset table", "bogus offset table", "empty fragment", "split fragment", "duplicate fragment",
                       "no delimiter", "1000 empty fragments", "no fragments", "odd length", "item length past end"])
    item = lambda content: struct.pack(e + "HHL", 0xFFFE, 0xE000, len(content)) + content  # noqa: E731
    if kind == "no offset table":
        out = data[:first.start] + data[first.end:]
    elif kind == "bogus offset table":
        offsets = rng.choice([[0xFFFFFFF0], [0, 0x7FFFFFFF], [100, 0], [1, 3, 5, 7, 9, 11, 13, 15]])
        out = data[:first.start] + item(pack("UL", offsets, e == "<")) + data[first.end:]
    elif kind == "empty fragment":
        out = data[:first.end] + item(b"") + data[first.end:]
    elif kind in ("split fragment", "duplicate fragment"):
        index = _frame_fragment(parsed, rng)
        frag = frags[index]
        content = data[frag.value:frag.end]
        cut = (len(content) // 2) & ~1
        new = item(content[:cut]) + item(content[cut:]) if kind == "split fragment" else item(content) * 2
        out = data[:frag.start] + new + data[frag.end:]
    elif kind == "no delimiter":
        out = data[:last.end] + data[last.end + 8:]
    elif kind == "1000 empty fragments":
        out = data[:first.end] + item(b"") * 1000 + data[first.end:]
    elif kind == "no fragments":
        out = data[:first.end] + data[last.end:]
    elif kind == "odd length":
        index = _frame_fragment(parsed, rng)
        out = set_length(data, frags[index], frags[index].length - 1)
    else:
        out = set_length(data, last, last.length + 0x1000)
    return out, kind


@_mutator("encaps.fill", needs="encaps")
def _frag_fill(data, rng):
    parsed = parse(data)
    index = _frame_fragment(parsed, rng)
    frag = parsed.fragments[index]
    keep = 64 if parsed.syntax == "1.2.840.10008.1.2.5" else rng.choice([2, 64, 256, 600])  # keep the codec header
    keep = min(keep, frag.length)
    byte = rng.choice([0x00, 0x7F, 0x80, 0x81, 0xFF])
    content = data[frag.value:frag.value + keep] + bytes([byte]) * (frag.length - keep)
    return data[:frag.value] + content + data[frag.end:], f"fragment {index} after byte {keep} filled with 0x{byte:02X}"


def _codec_sites(content: bytes, syntax: str) -> dict[str, tuple[int, int]]:
    """Where the codec header fields sit in one fragment: name -> (offset, size)."""
    sites = {}
    if syntax == "1.2.840.10008.1.2.5":  # RLE: 64-byte header, segment count then 15 offsets
        sites["rle segments"] = (0, 4)
        for i in range(1, 4):
            sites[f"rle offset {i}"] = (4 * i, 4)
        return sites
    soc = content.find(b"\xff\x4f\xff\x51")
    if soc >= 0:  # JPEG 2000 SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz Ssiz...
        siz = soc + 4
        sites.update({"j2k Xsiz": (siz + 4, 4), "j2k Ysiz": (siz + 8, 4), "j2k Xsiz+Ysiz": (siz + 4, 8),
                      "j2k XTsiz": (siz + 20, 4), "j2k Csiz": (siz + 36, 2), "j2k Ssiz": (siz + 38, 1)})
        return sites
    for marker in (b"\xff\xc3", b"\xff\xc1", b"\xff\xc0", b"\xff\xf7", b"\xff\xc7"):
        sof = content.find(marker)
        if sof >= 0:  # SOFn: Lf P Y X Nf
            sites.update({"jpeg P": (sof + 4, 1), "jpeg Y": (sof + 5, 2), "jpeg X": (sof + 7, 2),
                          "jpeg Y+X": (sof + 5, 4), "jpeg Nf": (sof + 9, 1)})
        dht = content.find(b"\xff\xc4")
        if dht >= 0:  # the Huffman table marker itself (a frame without one crashed imagecodecs)
            sites["jpeg DHT marker"] = (dht, 1)
            break
    return sites


@_mutator("encaps.codec_header", needs="encaps")
def _codec_header(data, rng):
    parsed = parse(data)
    index = _frame_fragment(parsed, rng) if rng.random() < 0.3 else 1  # fragment 1 starts the first frame
    frag = parsed.fragments[min(index, len(parsed.fragments) - 1)]
    sites = _codec_sites(data[frag.value:frag.end], parsed.syntax)
    if not sites:
        raise ValueError("no codec header found")
    name = rng.choice(sorted(sites))
    offset, size = sites[name]
    maximum = (1 << 8 * size) - 1
    value = rng.choice([0, 1, 2, 3, 15, 16, 17, 255, maximum, maximum // 2, rng.randrange(maximum + 1)]) & maximum
    if size == 4 and name.startswith("jpeg"):  # Y and X together: both huge, both tiny, or random
        value = rng.choice([0xFFFFFFFF, 0x7FFF7FFF, 0x00010001, 0, rng.getrandbits(32)])
    e = "<" if name.startswith("rle") else ">"  # RLE headers are little endian, JPEG / J2K big endian
    raw = struct.pack(e + {1: "B", 2: "H", 4: "L", 8: "Q"}[size], value if size != 8 else rng.choice(
        [0xFFFFFFFF_FFFFFFFF, 0x0000FFFF_0000FFFF, 0x00010000_00010000, 0]))
    at = frag.value + offset
    return data[:at] + raw + data[at + size:], f"{name} -> 0x{raw.hex()} (fragment {index})"


# --------------------------------------------------------------------------- seeds and cases


@dataclass(frozen=True)
class SeedSpec:
    """A real file to mutate: ``source`` is "pydicom" (pydicom / pydicom-data), "cq500" or "rsna"."""

    name: str
    source: str
    encaps: bool = False
    deflated: bool = False
    relabel: bool = False  # another modality's file (real pixel stream) with Modality set to CT
    reencode: str = ""  # a transfer syntax UID: the file re-encoded with pydicom's encoders
    root: str = ""  # for shared data: the folder that holds ``source``/``name``

    @property
    def label(self) -> str:
        return self.name + (f">{self.reencode.rsplit('.', 1)[-1]}" if self.reencode else "")


def _p(name, **kw) -> SeedSpec:
    return SeedSpec(name, "pydicom", **kw)


#: CT (or relabelled) monochrome files in pydicom and pydicom-data, every transfer syntax the viewer reads.
PYDICOM_SEEDS = [
    _p("CT_small.dcm"),  # explicit VR LE, 128x128 int16
    _p("MR_small_implicit.dcm", relabel=True),
    _p("MR_small_bigendian.dcm", relabel=True),
    _p("MR_small_RLE.dcm", relabel=True, encaps=True),
    _p("emri_small_RLE.dcm", relabel=True, encaps=True),  # 10 frames, enhanced MR functional groups
    _p("MR_small_jpeg_ls_lossless.dcm", relabel=True, encaps=True),
    _p("MR_small_jp2klossless.dcm", relabel=True, encaps=True),
    _p("JPEG-LL.dcm", relabel=True, encaps=True),  # real JPEG Lossless SV1 (NM, 1 frame)
    _p("JPGExtended.dcm", relabel=True, encaps=True),  # 12-bit JPEG Extended
    _p("693_UNCR.dcm"),  # the real head-CT slice 693 of CQ500-CT-310
    _p("693_UNCI.dcm"),
    _p("693_J2KR.dcm", encaps=True),
    _p("693_J2KI.dcm", encaps=True),
    _p("explicit_VR-UN.dcm", encaps=True),  # CT, J2K lossless, elements stored as UN
    _p("eCT_Supplemental.dcm"),  # enhanced CT, 2 frames
    _p("693_UNCR.dcm", encaps=True, reencode="1.2.840.10008.1.2.5"),  # RLE
    _p("693_UNCR.dcm", encaps=True, reencode="1.2.840.10008.1.2.4.80"),  # JPEG-LS lossless
    _p("CT_small.dcm", deflated=True, reencode=DEFLATE),
]


def shared_seeds(shared: Path | None, cq500_step: int = 40, rsna_step: int = 16) -> list[SeedSpec]:
    """Real CQ500 (JPEG Lossless) and RSNA (native, 12- and 16-bit, implicit and explicit) slices."""
    if shared is None:
        return []
    out = []
    for source, step, encaps in (("cq500-ct0", cq500_step, True), ("rsna-unlabelled", rsna_step, False)):
        files = sorted((Path(shared) / source).glob("*.dcm"))
        out += [SeedSpec(p.name, source, encaps=encaps, root=str(shared)) for p in files[::step]]
    return out


@functools.lru_cache(maxsize=64)
def seed_bytes(spec: SeedSpec) -> bytes:
    if spec.source != "pydicom":
        return (Path(spec.root) / spec.source / spec.name).read_bytes()
    from pydicom.data import get_testdata_file

    path = get_testdata_file(spec.name, download=False)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {spec.name} is not installed (pydicom-data)")
    data = Path(path).read_bytes()
    if spec.reencode:
        import copy
        import io

        with _quiet_pydicom():
            ds = pydicom.dcmread(io.BytesIO(data))
            ds = copy.deepcopy(ds)
            if spec.reencode == DEFLATE:
                ds.file_meta.TransferSyntaxUID = DEFLATE
                buffer = io.BytesIO()
                ds.save_as(buffer, implicit_vr=False, little_endian=True)
            else:
                ds.compress(spec.reencode)
                buffer = io.BytesIO()
                ds.save_as(buffer)
        data = buffer.getvalue()
    if spec.relabel:
        data = set_value(data, "Modality", b"CT")
    return data


def siblings(data: bytes, count: int = 3, same_series: bool = True, step: float = 5.0) -> list[bytes]:
    """Good neighbours of a real file: its pixel stream with new SOP UIDs, instance numbers and positions
    (``step`` mm apart along the slice normal), in its series or (``same_series=False``) a new one."""
    import io

    import numpy as np

    out = []
    parsed = parse(data) if data[128:132] == b"DICM" else None
    for k in range(1, count + 1):
        if parsed is not None and parsed.body_parsed:
            sib = data
            sop = (get_value(sib, "SOPInstanceUID") or b"1.2").rstrip(b"\0 ") + b".%d" % (90 + k)
            sib = set_value(sib, "SOPInstanceUID", sop)
            if get_value(sib, "MediaStorageSOPInstanceUID") is not None:
                sib = set_value(sib, "MediaStorageSOPInstanceUID", sop)
            instance = _first_number(get_value(sib, "InstanceNumber"), 1)
            sib = set_value(sib, "InstanceNumber", b"%d" % (int(instance) + k))
            position = get_value(sib, "ImagePositionPatient")
            if position is not None:
                xyz = np.array([float(v) for v in position.rstrip(b"\0 ").split(b"\\")])
                orientation = get_value(sib, "ImageOrientationPatient")
                normal = np.array([0.0, 0.0, 1.0])
                if orientation is not None:
                    o = np.array([float(v) for v in orientation.rstrip(b"\0 ").split(b"\\")])
                    normal = np.cross(o[:3], o[3:])
                shift = -step if k == 1 else step * (k - 1)
                xyz = xyz + shift * normal
                sib = set_value(sib, "ImagePositionPatient", "\\".join(f"{v:.4f}" for v in xyz).encode())
            if not same_series:
                series = (get_value(sib, "SeriesInstanceUID") or b"1.2").rstrip(b"\0 ") + b".99"
                sib = set_value(sib, "SeriesInstanceUID", series)
        else:  # deflated: through pydicom
            with _quiet_pydicom():
                ds = pydicom.dcmread(io.BytesIO(data))
                ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{90 + k}"
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.InstanceNumber = int(ds.get("InstanceNumber") or 1) + k
                if not same_series:
                    ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.99"
                buffer = io.BytesIO()
                ds.save_as(buffer)
            sib = buffer.getvalue()
        out.append(sib)
    return out


def _first_number(raw: bytes | None, default: float) -> float:
    try:
        return float(raw.rstrip(b"\0 ").split(b"\\")[0])
    except (AttributeError, ValueError):
        return default


def applicable(mutator: Mutator, spec: SeedSpec) -> bool:
    if mutator.needs == "encaps":
        return spec.encaps and not spec.deflated
    return mutator.needs == "" or not spec.deflated


#: How often each family is drawn (among those that apply to the seed file).
FAMILY_WEIGHTS = {"header": 0.5, "bytes": 0.3, "encaps": 0.3}


@dataclass(frozen=True)
class Case:
    seed: int
    spec: SeedSpec
    mutator: str
    same_series: bool  # the good neighbours share the mutated file's series (else they are another series)
    position: int  # where the mutated file sorts among the four file names

    @property
    def id(self) -> str:
        return f"{self.mutator}-{Path(self.spec.label).name}-{self.seed}"


def plan(seed: int, specs: list[SeedSpec]) -> Case:
    """The case for one integer seed (deterministic, no I/O)."""
    rng = random.Random(seed)
    sources = sorted({s.source for s in specs})  # pydicom, CQ500 and RSNA files equally often
    source = sources[rng.randrange(len(sources))]
    spec = rng.choice([s for s in specs if s.source == source])
    names = [m for m in sorted(MUTATORS) if applicable(MUTATORS[m], spec)]
    families = sorted({m.split(".")[0] for m in names})
    weights = [FAMILY_WEIGHTS[f] for f in families]
    family = rng.choices(families, weights)[0]
    name = rng.choice([m for m in names if m.startswith(family + ".")])
    return Case(seed, spec, name, rng.random() < 0.75, rng.randrange(4))


def mutate(case: Case, data: bytes) -> tuple[bytes, str, str]:
    """(mutated bytes, mutator actually used, detail). A mutator that does not fit this file (nothing to
    delete, no codec header) is retried with other draws, then replaced by ``bytes.bitflip``."""
    for attempt in range(8):
        rng = random.Random(f"{case.seed}/{case.mutator}/{attempt}")
        try:
            with _quiet_pydicom():
                out, detail = MUTATORS[case.mutator].fn(data, rng)
            return out, case.mutator, detail
        except (ValueError, KeyError):
            continue
    out, detail = _bitflip(data, random.Random(case.seed))
    return out, "bytes.bitflip", detail


def write_case(case: Case, folder: Path, data: bytes | None = None, sibling_bytes: list[bytes] | None = None):
    """Write the mutated file among three good neighbours; returns (case file name, good names, mutator, detail)."""
    original = seed_bytes(case.spec) if data is None else data
    mutated, used, detail = mutate(case, original)
    sibs = sibling_bytes if sibling_bytes is not None else siblings(original, 3, case.same_series)
    case_name, good = write_folder(folder, mutated, sibs, case.position)
    return case_name, good, used, detail


def write_folder(folder: Path, mutated: bytes, good: list[bytes], position: int = 0) -> tuple[str, list[str]]:
    """``mutated`` and the ``good`` files as s0.dcm, s1.dcm, ... (the mutated one at ``position``)."""
    names = [f"s{i}.dcm" for i in range(len(good) + 1)]
    case_name = names.pop(position)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / case_name).write_bytes(mutated)
    for name, data in zip(names, good):
        (folder / name).write_bytes(data)
    return case_name, names


# --------------------------------------------------------------------------- running a case

#: Outcomes, worst first. ``ok_*``: the good slices loaded and decoded, the mutated file was loaded
#: (``ok_loaded``), skipped with a reason (``ok_skipped``) or failed to decode with a message
#: (``ok_decode_error``). ``typed``: load raised an IchViewerError although good slices were there.
OUTCOMES = ["crash", "hang", "memory", "untyped", "lost", "unreported", "nonfinite", "slow", "typed",
            "ok_decode_error", "ok_skipped", "ok_loaded"]
FAILURES = set(OUTCOMES[:8])
#: A slice error that is really an allocation failure (under the harness's and tests' address-space cap):
#: without a cap the same file takes that memory (65535x65535 JPEG frame: 8 GB, 17 GB peak RSS).
MEMORY_WORDS = re.compile(r"MemoryError|Unable to allocate|out of memory|bad_alloc|cannot allocate", re.I)


def _tail(exc: BaseException) -> str:
    """The project's frames (where a fix goes), the innermost two frames, and the exception line."""
    frames = traceback.extract_tb(exc.__traceback__)
    keep = [f for i, f in enumerate(frames) if "ich_viewer" in f.filename or i >= len(frames) - 2]
    text = "".join(traceback.format_list(keep)) + "".join(traceback.format_exception_only(exc))
    return text[-2000:]


def examine(folder: Path, case_name: str, good: list[str], timeout: float = 8.0, stall: float = 5.0,
            slow: float | None = 2.0) -> dict:
    """Load ``folder`` with ``ich_viewer.load``, decode every series, and classify what happened.

    A decoder that holds the GIL cannot be seen stalling from here (this thread cannot run until it
    lets go): ``slow`` flags it afterwards, and the harness kills a child that never answers."""
    import numpy as np

    import ich_viewer
    from ich_viewer.core.errors import IchViewerError
    from ich_viewer.core.volume import VolumeLoader

    start = time.perf_counter()
    record: dict = {"outcome": "ok_loaded", "message": ""}

    def fail(outcome: str, message: str, exc: BaseException | None = None) -> dict:
        if OUTCOMES.index(outcome) < OUTCOMES.index(record["outcome"]):
            record.update(outcome=outcome, message=message[:500])
            if exc is not None:
                record["traceback"] = _tail(exc)
        return record

    try:
        result = ich_viewer.load(folder)
    except IchViewerError as exc:
        return fail("typed", f"{type(exc).__name__}: {exc}")
    except MemoryError as exc:
        return fail("memory", "MemoryError in load", exc)
    except BaseException as exc:  # noqa: BLE001 - the point is to see everything
        return fail("untyped", f"load: {type(exc).__name__}: {exc}", exc)
    record["load_s"] = round(time.perf_counter() - start, 3)
    skipped = {Path(s.path).name: s.reason for s in result.skipped}
    loaded = set()
    try:
        for series in result.series:
            loader = VolumeLoader(series)
            last, progress_at = -1, time.perf_counter()
            while not loader.wait(timeout=0.2):
                now = time.perf_counter()
                if loader.done != last:
                    last, progress_at = loader.done, now
                if now - progress_at > stall or now - start > timeout:
                    loader.cancel()
                    return fail("hang", f"decoding stalled: {loader.done} of {len(series.slices)} slices finished "
                                f"after {now - start:.1f} s ({series.slices[0].transfer_syntax})")
            for index, ref in enumerate(series.slices):
                name = ref.file.name
                loaded.add(name)
                if index in loader.errors:
                    if name in good:
                        fail("lost", f"good slice {name} failed to decode: {loader.errors[index]}")
                    elif not loader.errors[index].strip():
                        fail("unreported", "the mutated slice failed to decode with an empty message")
                    elif MEMORY_WORDS.search(loader.errors[index]):
                        fail("memory", f"decoding tried an allocation beyond the cap: {loader.errors[index]}")
                    else:
                        record["case"] = "decode_error"
                        fail("ok_decode_error", loader.errors[index])
                elif not np.isfinite(loader.slice(index)).all():
                    fail("nonfinite", f"slice {index} ({'good' if name in good else 'mutated'}) has non-finite HU")
            geometry = [*np.asarray(series.z, dtype=float).ravel(), *series.spacing]
            if not np.isfinite(geometry).all():
                fail("nonfinite", f"series geometry not finite: z={list(series.z)[:4]}, spacing={series.spacing}")
    except MemoryError as exc:
        return fail("memory", "MemoryError while decoding", exc)
    except BaseException as exc:  # noqa: BLE001
        return fail("untyped", f"decode: {type(exc).__name__}: {exc}", exc)
    missing = [name for name in good if name not in loaded]
    if missing:
        fail("lost", f"good slice(s) {missing} not loaded: {[skipped.get(m, 'not skipped either') for m in missing]}")
    if case_name in skipped:
        if skipped[case_name].strip():
            fail("ok_skipped", skipped[case_name])
        else:
            fail("unreported", "skipped with an empty reason")
    elif case_name not in loaded:
        fail("unreported", "the mutated file was neither loaded nor listed as skipped")
    record["total_s"] = round(time.perf_counter() - start, 3)
    if slow is not None and record["total_s"] > slow:
        fail("slow", f"load + decode took {record['total_s']:.2f} s")
    return record


def _status_kb(field: str, pid: int | str = "self") -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:  # a process that has ended
        return 0
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def examine_forked(folder: Path, case_name: str, good: list[str], time_limit: float = 10.0,
                   address_space: int = 3 * 2**30, **examine_kw) -> dict:
    """:func:`examine` in a forked child (cheap: the caller has imported everything already), so a
    segfault, abort or runaway is an outcome instead of the caller's end. The child may grow its
    address space by ``address_space`` bytes and is killed after ``time_limit`` s; the record gets
    ``wall_s``, ``peak_rss_mb`` (from wait4) and the last lines of the child's stderr."""
    stderr_path = folder.parent / f"{folder.name}.stderr"
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: limits, one case, one JSON record down the pipe, never returns
        wrote = False
        try:
            os.close(read_fd)
            err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(err, 2)
            limit = _status_kb("VmSize") * 1024 + address_space
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            from ich_viewer.core import decoder_process

            # Compressed slices decode in decoder processes: started before the clock (the viewer
            # starts them with the application), and stopped well before the stall limit below.
            decoder_process.TIME_LIMIT_S = min(decoder_process.TIME_LIMIT_S, time_limit * 0.3)
            decoder_process.prestart(1).join()  # more start if a case needs them
            examine_kw.setdefault("timeout", time_limit * 0.8)
            record = examine(folder, case_name, good, **examine_kw)
            record["hwm_mb"] = round(_status_kb("VmHWM") / 1024, 1)
            record["decoder_hwm_mb"] = round(max((_status_kb("VmHWM", pid) for pid in decoder_process.child_pids()),
                                                 default=0) / 1024, 1)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(json.dumps(record).encode())
            wrote = True
        finally:
            os._exit(0 if wrote else 3)
    os.close(write_fd)
    chunks, killed = [], False
    while True:
        left = started + time_limit - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        if select.select([read_fd], [], [], left)[0]:
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status, usage = os.wait4(pid, 0)
    os.close(read_fd)
    stderr = stderr_path.read_text(errors="replace").strip().splitlines() if stderr_path.exists() else []
    stderr_path.unlink(missing_ok=True)
    record = {"wall_s": round(time.monotonic() - started, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
              "stderr": stderr[-3:]}
    if killed:
        record.update(outcome="hang", message=f"killed after {time_limit:.0f} s")
    elif chunks:
        record.update(json.loads(b"".join(chunks)))
    elif os.WIFSIGNALED(status):
        record.update(outcome="crash", message=f"{signal.Signals(os.WTERMSIG(status)).name}: {' | '.join(stderr[-2:])}")
    else:
        record.update(outcome="crash", message=f"exit {os.WEXITSTATUS(status)} without a result: {' | '.join(stderr[-2:])}")
    return record
