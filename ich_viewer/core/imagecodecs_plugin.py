"""A pydicom decoding plugin that hands the JPEG family (baseline, 12-bit extended, lossless, JPEG-LS) to imagecodecs,
after checking each frame's marker structure.

Why imagecodecs: most head CT arrives as JPEG Lossless. pydicom's permissively licensed choice for it
is GDCM, which decodes a 512x512 slice in ~12 ms and holds the GIL; imagecodecs (BSD-3) decodes it in
~3 ms and releases the GIL, so slices decode in parallel threads (bench/bench_load.py measures it).
pylibjpeg-libjpeg would also be fast but is GPL-3.0, which does not fit our installer. 12-bit JPEG
Extended is decoded by nothing else permissive.

Why the checks: native JPEG decoders trust the frame. A frame without Huffman tables made imagecodecs'
lossless decoder segfault; a frame header claiming 65535x65535 made it allocate 8 GB; a truncated
scan decodes into guessed pixels with no error; a truncated JPEG-LS stream made CharLS spin for up to
40 s. So before decoding, the markers up to the scan are walked: every segment must fit, the frame
header must match the DICOM image (rows, columns, one component), Huffman-coded frames must carry
their tables, and the frame must end with the end-of-image marker.

pydicom stays in charge of everything else (frame extraction, pixel representation, shapes).
"""

from __future__ import annotations

import struct

from pydicom import uid
from pydicom.pixels.decoders import (JPEGBaseline8BitDecoder, JPEGExtended12BitDecoder, JPEGLosslessDecoder,
                                     JPEGLosslessSV1Decoder, JPEGLSLosslessDecoder, JPEGLSNearLosslessDecoder)

try:
    import imagecodecs
except ImportError:  # pragma: no cover - imagecodecs is a runtime dependency
    imagecodecs = None

LABEL = "imagecodecs"

DECODER_DEPENDENCIES = {
    uid.JPEGBaseline8Bit: ("imagecodecs",),
    uid.JPEGLossless: ("imagecodecs",),
    uid.JPEGLosslessSV1: ("imagecodecs",),
    uid.JPEGExtended12Bit: ("imagecodecs",),
    uid.JPEGLSLossless: ("imagecodecs",),
    uid.JPEGLSNearLossless: ("imagecodecs",),
}
_JPEG_LS = (uid.JPEGLSLossless, uid.JPEGLSNearLossless)

START_OF_IMAGE, END_OF_IMAGE = b"\xff\xd8", b"\xff\xd9"
_DHT, _SOS = 0xC4, 0xDA
#: Frame headers: SOF0-15 except DHT (C4), JPG (C8), DAC (CC); F7 is JPEG-LS's SOF55.
_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)} | {0xF7}
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}
_STANDALONE = set(range(0xD0, 0xD8)) | {0x01}


def is_available(transfer_syntax: str) -> bool:
    return imagecodecs is not None and transfer_syntax in DECODER_DEPENDENCIES


def frame_problem(src: bytes, rows: int, columns: int) -> str | None:
    """Why this JPEG / JPEG-LS frame must not reach a decoder, or None (see the module doc)."""
    data = bytes(src)
    # Fragments are padded to even length, with 0x00 or 0xFF; in JPEG data FF D9 can only be the marker.
    if not data[-16:].rstrip(b"\x00\xff").endswith(END_OF_IMAGE):
        return "truncated JPEG data (no end-of-image marker)"
    if not data.startswith(START_OF_IMAGE):
        return "JPEG data without a start-of-image marker"
    pos, frame, huffman_tables = 2, None, False
    while True:
        while pos < len(data) and data[pos] != 0xFF:
            pos += 1  # junk between segments is skipped by decoders too
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 >= len(data):
            return "JPEG data that ends before its scan"
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > len(data):
            return f"a JPEG segment (marker FF{marker:02X}) longer than its data"
        if marker in _SOF:
            if length < 8:
                return "a JPEG frame header that is too short"
            _, height, width, components = struct.unpack_from(">BHHB", data, pos + 2)
            if (height, width, components) != (rows, columns, 1):
                return (f"its JPEG frame is {width}x{height} with {components} component(s), not the "
                        f"{columns}x{rows} single-component image its header gives")
            frame = marker
        elif marker == _DHT:
            huffman_tables = True
        elif marker == _SOS:
            if frame is None:
                return "JPEG data with no frame header before its scan"
            if frame in _HUFFMAN_SOF and not huffman_tables:
                return "JPEG data with no Huffman tables"
            return None
        pos += length


def _decode_frame(src: bytes, runner) -> bytes:
    """Decode one frame; pydicom reinterprets the bytes with the dataset's PixelRepresentation, so signed
    data come back signed."""
    problem = frame_problem(src, runner.rows, runner.columns)
    if problem:
        raise ValueError(problem)
    if runner.transfer_syntax in _JPEG_LS:
        return imagecodecs.jpegls_decode(src).tobytes()
    if runner.transfer_syntax in (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit):
        return imagecodecs.jpeg8_decode(src).tobytes()  # libjpeg-turbo, 8- and 12-bit
    return imagecodecs.ljpeg_decode(src).tobytes()


def register() -> None:
    """Add the plugin to pydicom's JPEG decoders (idempotent)."""
    for decoder in (JPEGBaseline8BitDecoder, JPEGLosslessDecoder, JPEGLosslessSV1Decoder, JPEGExtended12BitDecoder, JPEGLSLosslessDecoder,
                    JPEGLSNearLosslessDecoder):
        if LABEL not in decoder.available_plugins and LABEL not in getattr(decoder, "_unavailable", {}):
            decoder.add_plugin(LABEL, (__name__, "_decode_frame"))


def plugin_for(transfer_syntax: str) -> str:
    """The plugin label to ask pydicom for, or '' to let pydicom choose."""
    return LABEL if is_available(transfer_syntax) else ""
