"""A pydicom decoding plugin that hands JPEG Lossless and 12-bit JPEG Extended frames to imagecodecs.

Why: most head CT arrives as JPEG Lossless. pydicom's permissively licensed choice for it is GDCM,
which decodes a 512x512 slice in ~12 ms and holds the GIL; imagecodecs (BSD-3) decodes it in
~3 ms and releases the GIL, so slices decode in parallel threads (bench/bench_load.py measures it).
pylibjpeg-libjpeg would also be fast but is GPL-3.0, which does not fit our installer.

pydicom stays in charge of everything else (frame extraction, pixel representation, shapes); this
module only implements pydicom's decoder-plugin interface for the two JPEG Lossless syntaxes, and
for 12-bit JPEG Extended, which neither GDCM nor Pillow decode (only the GPL pylibjpeg-libjpeg).
"""

from __future__ import annotations

from pydicom import uid
from pydicom.pixels.decoders import JPEGExtended12BitDecoder, JPEGLosslessDecoder, JPEGLosslessSV1Decoder

try:
    import imagecodecs
except ImportError:  # pragma: no cover - imagecodecs is a runtime dependency
    imagecodecs = None

LABEL = "imagecodecs"

DECODER_DEPENDENCIES = {
    uid.JPEGLossless: ("imagecodecs",),
    uid.JPEGLosslessSV1: ("imagecodecs",),
    uid.JPEGExtended12Bit: ("imagecodecs",),
}


def is_available(transfer_syntax: str) -> bool:
    return imagecodecs is not None and transfer_syntax in DECODER_DEPENDENCIES


#: JPEG's end-of-image marker. libjpeg decoders fill a truncated scan with guesses and no error (a
#: truncated CQ500 slice decoded with 13-81% wrong pixels), so a frame must end with it.
END_OF_IMAGE = b"\xff\xd9"


def _decode_frame(src: bytes, runner) -> bytes:
    """Decode one JPEG Lossless frame; pydicom reinterprets the bytes with the dataset's
    PixelRepresentation, so signed data come back signed."""
    # Fragments are padded to even length, with 0x00 or 0xFF; in JPEG data FF D9 can only be the marker.
    if not bytes(src[-16:]).rstrip(b"\x00\xff").endswith(END_OF_IMAGE):
        raise ValueError("truncated JPEG data (no end-of-image marker)")
    if runner.transfer_syntax == uid.JPEGExtended12Bit:
        return imagecodecs.jpeg8_decode(src).tobytes()  # libjpeg-turbo, 8- and 12-bit
    return imagecodecs.ljpeg_decode(src).tobytes()


def register() -> None:
    """Add the plugin to pydicom's JPEG Lossless decoders (idempotent)."""
    for decoder in (JPEGLosslessDecoder, JPEGLosslessSV1Decoder, JPEGExtended12BitDecoder):
        if LABEL not in decoder.available_plugins and LABEL not in getattr(decoder, "_unavailable", {}):
            decoder.add_plugin(LABEL, (__name__, "_decode_frame"))


def plugin_for(transfer_syntax: str) -> str:
    """The plugin label to ask pydicom for, or '' to let pydicom choose."""
    return LABEL if is_available(transfer_syntax) else ""
