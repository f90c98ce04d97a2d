"""Decoding one slice's pixels to HU, and which installed decoder reads each transfer syntax.

Compressed data is decoded in a separate process (:mod:`~ich_viewer.core.decoder_process`), so a decoder
that crashes or loops costs one slice, not the application. Messages name the transfer syntax, never the
file: file names may carry patients' names.
"""

from __future__ import annotations

import functools
import logging
import warnings

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom import uid as dicom_uid
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders.base import get_decoder

from ich_viewer.core import archives, decoder_process, imagecodecs_plugin
from ich_viewer.core.errors import DecodeError, one_line
from ich_viewer.core.series import AIR_HU, HuTransform, SliceRef


@functools.cache
def configure_pydicom() -> None:
    """pydicom as the loader needs it, done by the first scan or decode rather than at import (importing
    this module changes nothing global): the imagecodecs plugin in its JPEG decoders, and reading-time
    validation off (RSNA 2019 files store "ID_..." in UI fields; pydicom would warn once per file; we
    validate what we use ourselves)."""
    imagecodecs_plugin.register()
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    # pydicom logs and warns about a file's oddities (an unknown character set escape: 12 lines and a source
    # line per file on a triage's stderr); the loader reports what matters for a file as its skip reason.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")


#: What would decode each compressed syntax, for the message when nothing installed can.
DECODER_ADVICE = {
    dicom_uid.JPEGLossless: "imagecodecs or python-gdcm",
    dicom_uid.JPEGLosslessSV1: "imagecodecs or python-gdcm",
    dicom_uid.JPEGBaseline8Bit: "imagecodecs, Pillow or python-gdcm",
    dicom_uid.JPEGExtended12Bit: "imagecodecs (12-bit) or Pillow (8-bit)",
    dicom_uid.JPEGLSLossless: "imagecodecs, pyjpegls or python-gdcm",
    dicom_uid.JPEGLSNearLossless: "imagecodecs, pyjpegls or python-gdcm",
    dicom_uid.JPEG2000Lossless: "pylibjpeg-openjpeg or python-gdcm",
    dicom_uid.JPEG2000: "pylibjpeg-openjpeg or python-gdcm",
    dicom_uid.RLELossless: "pydicom itself (or pylibjpeg-rle)",
}

#: Decoders that report hostile data as Python exceptions, preferred over GDCM (which throws through C++
#: into std::terminate on some malformed JPEG 2000, killing the process): OpenJPEG through its pylibjpeg
#: plugin; the JPEG family goes to imagecodecs after its marker checks (imagecodecs_plugin), and to these
#: only where imagecodecs is missing.
SAFE_PLUGINS = {
    dicom_uid.JPEGBaseline8Bit: "pillow",
    dicom_uid.JPEG2000Lossless: "pylibjpeg",
    dicom_uid.JPEG2000: "pylibjpeg",
    dicom_uid.JPEGLSLossless: "pyjpegls",
    dicom_uid.JPEGLSNearLossless: "pyjpegls",
}


def decoder_problem(tsuid: dicom_uid.UID) -> str | None:
    """Why no installed decoder reads this transfer syntax, or None."""
    if not tsuid.is_valid or not tsuid.is_transfer_syntax:
        return f"its transfer syntax UID ({str(tsuid)[:64]!r}) is not a transfer syntax"
    try:
        decoder = get_decoder(tsuid)
    except NotImplementedError:
        return f"uses transfer syntax {tsuid.name} ({tsuid}), which pydicom cannot decode"
    if not decoder.is_available:
        advice = DECODER_ADVICE.get(tsuid, "a decoder plugin for pydicom")
        return f"uses {tsuid.name} ({tsuid}); no installed decoder reads it (install {advice})"
    return None


def decoder_plugin(transfer_syntax: str) -> str:
    """The pydicom decoding plugin used for this syntax ("" for pydicom's own choice); the selftest names it."""
    label = imagecodecs_plugin.plugin_for(transfer_syntax)
    if label:
        return label
    safe = SAFE_PLUGINS.get(transfer_syntax, "")
    return safe if safe and safe in get_decoder(dicom_uid.UID(transfer_syntax)).available_plugins else ""


def decode_slice(ref: SliceRef, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one slice to float32 HU [H, W]. Raises :class:`DecodeError` with the syntax's name when it
    cannot be decoded, has another size than ``shape``, or gives values that are not finite."""
    tsuid = dicom_uid.UID(ref.transfer_syntax)
    if tsuid not in dicom_uid.UncompressedTransferSyntaxes:  # native and deflated data: numpy and zlib
        try:
            stored = decoder_process.run(decode_stored, ref)
        except decoder_process.DecoderFailure as exc:
            raise DecodeError(f"could not decode its {tsuid.name} data: {exc}") from None
    else:
        stored = decode_stored(ref)
    if not isinstance(stored, np.ndarray):
        raise DecodeError(f"its {tsuid.name} decoder gave no image")
    if stored.ndim != 2 or (shape is not None and stored.shape != tuple(shape)):
        raise DecodeError(f"its decoded image is {'x'.join(map(str, stored.shape))} pixels, not the "
                          f"{'x'.join(map(str, shape or ()))} its header and series give")
    hu = stored_to_hu(stored, ref.hu)
    if not np.isfinite(hu).all():
        raise DecodeError("its values are not finite numbers after the rescale")
    return hu


def decode_stored(ref: SliceRef) -> np.ndarray:
    """The slice's stored values as the decoder gives them, in this process; :func:`decode_slice` is
    what callers want."""
    configure_pydicom()
    tsuid = dicom_uid.UID(ref.transfer_syntax)
    try:
        with ref.file.open() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid-UID and VR chatter from odd files
            if ref.transfer_syntax == dicom_uid.DeflatedExplicitVRLittleEndian:
                # pixel_array() reads raw file offsets, which a deflated stream does not have.
                stored = pydicom.dcmread(fp).pixel_array
                return stored[ref.frame] if ref.frame is not None else stored
            return pixel_array(fp, index=ref.frame, decoding_plugin=decoder_plugin(ref.transfer_syntax))
    except archives.ArchiveError as exc:
        raise DecodeError(str(exc)) from exc
    except MemoryError as exc:
        raise DecodeError(f"{tsuid.name} data that would not fit in memory") from exc
    except BaseException as exc:  # every decoder raises its own types; a Rust panic is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise DecodeError(
            f"could not decode its {tsuid.name} ({tsuid}) data ({one_line(exc)}); "
            f"it decodes with {DECODER_ADVICE.get(tsuid, 'pydicom')} when the data is intact"
        ) from exc


def stored_to_hu(stored: np.ndarray, transform: HuTransform) -> np.ndarray:
    """Stored values -> float32 HU: RSNA wrap fix, padding and out-of-field pixels to air."""
    values = stored.astype(np.int32)
    padding = values == transform.padding_value if transform.padding_value is not None else None
    if transform.wrap_12bit:
        values = (values + 1000) % 4096 - 1000
    hu = values.astype(np.float32) * np.float32(transform.slope) + np.float32(transform.intercept)
    if padding is not None:
        hu[padding] = AIR_HU
    # -2000 / -3024 mark pixels outside the reconstruction circle; nothing real is below air.
    np.maximum(hu, np.float32(AIR_HU), out=hu)
    return hu
