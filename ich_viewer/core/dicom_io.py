"""Opening CT: scan each file's header, keep the usable CT images, group them into studies and series.

Headers first (``stop_before_pixels``), pixels later and in parallel (:mod:`~ich_viewer.core.dicom_pixels`
through :class:`~ich_viewer.core.volume.VolumeLoader`). One bad file never stops a load: it is reported in
:attr:`LoadResult.skipped` with a one-line reason. Files are found by :mod:`~ich_viewer.core.dicom_files`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import mmap
import os
import struct
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Sequence

import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

from ich_viewer.core import archives, fast_scan, header_checks
from ich_viewer.core.dicom_files import iter_candidates
from ich_viewer.core.dicom_pixels import configure_pydicom, decoder_problem
from ich_viewer.core.errors import NoImagesFoundError, one_line
from ich_viewer.core.geometry import order_slices
from ich_viewer.core.series import (
    AIR_HU,
    Acquisition,
    FileRef,
    HuTransform,
    LoadResult,
    Patient,
    Series,
    Skipped,
    SliceRef,
    Study,
)
from ich_viewer.core.windows import Window

log = logging.getLogger(__name__)

PIXEL_DATA_TAG = (0x7FE0, 0x0010)
CT_STORAGE = {dicom_uid.CTImageStorage, dicom_uid.EnhancedCTImageStorage, "1.2.840.10008.5.1.4.1.1.2.2"}

ProgressCallback = Callable[[int, int], None]

#: The only header elements the scan converts; skipping the rest makes scanning ~25% faster.
SCAN_TAGS = [
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "Modality", "ImageType", "StudyDate",
    "StudyDescription", "SeriesDescription", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber", "ImagePositionPatient",
    "ImageOrientationPatient", "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "Rows",
    "Columns", "PixelSpacing", "BitsAllocated", "BitsStored", "PixelRepresentation", "PixelPaddingValue",
    "WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "ContrastBolusAgent", "ContrastBolusRoute", "BodyPartExamined", "ConvolutionKernel", "ProtocolName",
]
#: Files per fast-scan batch: progress is reported between batches.
SCAN_CHUNK = 256
NOT_DICOM = "not a DICOM file"
#: Files that are expected beside a study (labels.csv, CQ500's manifest.csv, notes): reported as a count.
SIDECAR_SUFFIXES = (".csv", ".txt")
# pydicom converts keywords to tags on every call; passing tags saves ~20% of each header read.
_SCAN_TAG_NUMBERS = [Tag(keyword) for keyword in SCAN_TAGS]


# --------------------------------------------------------------------------- scanning headers


class _Scanned:
    """Header facts of one usable file, before grouping. Every value grouping needs is converted here,
    inside the scan's error handling: pydicom converts values lazily, and an element with an unknown VR
    raised NotImplementedError out of load() when it was first read while grouping."""

    __slots__ = ("slices", "study_uid", "series_uid", "shape", "orientation", "spacing", "study_date",
                 "study_description", "patient", "series_description", "series_number", "file_window", "acquisition",
                 "spacing_known", "monochrome1")

    def __init__(self, slices, ds, shape, orientation, spacing, spacing_known):
        self.slices = slices
        self.spacing_known = spacing_known
        self.study_uid = _text(ds, "StudyInstanceUID") or "unknown study"
        self.series_uid = _text(ds, "SeriesInstanceUID") or "unknown series"
        self.shape = shape
        self.orientation = orientation
        self.spacing = spacing
        self.study_date, self.study_description = _text(ds, "StudyDate"), _text(ds, "StudyDescription")
        self.patient = Patient(name=_text(ds, "PatientName"), id=_text(ds, "PatientID"),
                               birth_date=_text(ds, "PatientBirthDate"), sex=_text(ds, "PatientSex"))
        self.series_description = _text(ds, "SeriesDescription")
        self.monochrome1 = _text(ds, "PhotometricInterpretation").strip().upper() == "MONOCHROME1"
        try:
            self.series_number = _int(header_checks.first(ds.get("SeriesNumber")))
        except Exception:  # noqa: BLE001 - an unreadable series number only changes the series' order
            self.series_number = None
        self.file_window = _file_window(ds)
        self.acquisition = Acquisition(*(_text(ds, k) for k in ("ContrastBolusAgent", "ContrastBolusRoute",
                                                                 "BodyPartExamined", "ConvolutionKernel", "ProtocolName")))


def _text(ds, keyword: str) -> str:
    """A text element, '' when absent or unreadable (a damaged description must not lose the image)."""
    try:
        return str(ds.get(keyword, "") or "")
    except Exception:  # noqa: BLE001 - pydicom raises what the element's VR handler raises
        return ""


def scan_file(ref: FileRef) -> _Scanned | Skipped:
    """Read one file's header and decide whether it is a usable CT image (never raises)."""
    configure_pydicom()
    try:
        with _open_mapped(ref) as fp:
            if fast_scan.inflates_too_far(fp):
                return Skipped(str(ref), "a deflated DICOM file that inflates to more than "
                                         f"{fast_scan.MAX_INFLATED // 2**20} MB (a CT slice needs a few MB)")
            ds = _read_header(fp)
            if ds is None:
                return Skipped(str(ref), NOT_DICOM)
            problem = _check_image(ds, fp)
    except archives.ArchiveError as exc:
        return Skipped(str(ref), str(exc))
    except MemoryError:
        return Skipped(str(ref), "unreadable DICOM file (its header needs more memory than this machine gives it)")
    except RecursionError:
        return Skipped(str(ref), "unreadable DICOM file (its sequences nest too deeply to read)")
    except Exception as exc:  # noqa: BLE001 - a broken file is a skip reason, not a crash
        return Skipped(str(ref), f"unreadable DICOM file ({one_line(exc)})")
    except BaseException as exc:  # a Rust decoder's panic is a BaseException; exits still propagate
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return Skipped(str(ref), f"unreadable DICOM file ({type(exc).__name__})")
    if problem:
        return Skipped(str(ref), problem)
    return _describe_checked(ref, ds)


def _describe_checked(ref: FileRef, ds) -> _Scanned | Skipped:
    try:
        return _describe(ref, ds)
    except header_checks.HeaderError as exc:
        return Skipped(str(ref), f"invalid header: {exc}")
    except Exception as exc:  # noqa: BLE001
        return Skipped(str(ref), f"invalid image geometry tags ({one_line(exc)})")


def _open_mapped(ref: FileRef):
    """The file as a read-only memory map: pydicom calls ``tell()`` ~130 times per header, and on a
    buffered file each call is a system call (a third of the scan time); on a map it is not."""
    if ref.member is not None:
        return ref.open()  # a zip member's stream
    with open(ref.path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            return io.BytesIO(b"")


def _read_header(fp) -> Dataset | None:
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_SCAN_TAG_NUMBERS)
    except InvalidDicomError:
        pass
    # Old files without the 128-byte preamble: accept only if forcing yields an image header.
    fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True, specific_tags=_SCAN_TAG_NUMBERS)
    except Exception:  # noqa: BLE001
        return None
    if "Rows" not in ds or ("Modality" not in ds and "SOPClassUID" not in ds):
        return None
    return ds


def _transfer_syntax(ds: Dataset) -> dicom_uid.UID:
    meta = getattr(ds, "file_meta", None)
    tsuid = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsuid:
        return dicom_uid.UID(tsuid)
    return dicom_uid.ImplicitVRLittleEndian if ds.is_implicit_VR is not False else dicom_uid.ExplicitVRLittleEndian


def _check_image(ds: Dataset, fp) -> str | None:
    """Why this header is not a usable CT image, or None. ``fp`` sits where the header ended."""
    if not any(k in ds for k in ("Rows", "Modality", "SOPClassUID")):
        return "not a DICOM image (its header has no image or modality tags)"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == dicom_uid.MediaStorageDirectoryStorage:
        return "a DICOMDIR index, not an image (open the DICOMDIR itself to follow it)"
    modality = str(ds.get("Modality", "") or "")
    if modality != "CT" and not (not modality and sop_class in CT_STORAGE):
        return f"not CT (modality {modality or 'missing'})"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        return "a localizer (scout) image, not an axial slice"
    if "Rows" not in ds or "Columns" not in ds:
        return "no pixel data (no image size)"
    problem = header_checks.image_problem(ds) or _per_frame_problem(ds)
    if problem:
        return problem
    tsuid = _transfer_syntax(ds)
    problem = decoder_problem(tsuid)
    if problem or tsuid == dicom_uid.DeflatedExplicitVRLittleEndian:
        return problem  # a deflated stream is compressed: its size checks happen when decoding
    return _check_pixel_bytes(ds, fp, tsuid)


def _per_frame_problem(ds: Dataset) -> str | None:
    """An enhanced CT whose per-frame groups do not describe every frame: the frames without one would take
    the file's top-level rescale (slope 1, intercept 0 when it has none: HU off by 1,024) and no position."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    frames = header_checks.integer(ds, "NumberOfFrames", 1, low=1, high=header_checks.MAX_FRAMES)
    if per_frame is not None and frames > 1 and len(per_frame) != frames:
        if len(per_frame) > frames:
            return f"its per-frame functional groups describe {len(per_frame)} frames, but it has {frames}"
        return (f"its per-frame functional groups describe {len(per_frame)} of its {frames} frames, so the others' "
                "positions and Hounsfield units are unknown")
    if per_frame is None or frames == 1:
        return None
    # Each frame's rescale and position, from its own group, the shared group or (rescale) the top level: a frame
    # without a rescale read its stored values as HU (bone for brain), one without a position scrambled the order
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    top_rescale = "RescaleSlope" in ds and "RescaleIntercept" in ds
    no_rescale, no_position = [], []
    for frame, group in enumerate(per_frame, 1):
        transform = _group_item(group, shared, "PixelValueTransformationSequence")
        if not top_rescale and (transform is None or "RescaleSlope" not in transform or "RescaleIntercept" not in transform):
            no_rescale.append(frame)
        plane = _group_item(group, shared, "PlanePositionSequence")
        if plane is None or "ImagePositionPatient" not in plane:
            no_position.append(frame)
    if no_rescale:
        return f"{_frames_text(no_rescale, frames)} no rescale, so their Hounsfield units are unknown"
    if no_position and len(no_position) < frames:  # none at all: frames keep their stored order, as the file has it
        return f"{_frames_text(no_position, frames)} no position, so the slices' order is unknown"
    return None


def _frames_text(frames: list[int], total: int) -> str:
    """"frame 3 of its 6 has" or "frames 1, 2 of its 6 have"."""
    shown = ", ".join(map(str, frames[:5])) + (", ..." if len(frames) > 5 else "")
    return f"frame {shown} of its {total} has" if len(frames) == 1 else f"frames {shown} of its {total} have"


def _check_pixel_bytes(ds: Dataset, fp, tsuid: dicom_uid.UID) -> str | None:
    """Truncated or pixel-less files are caught here, from the pixel element's header alone."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return "no pixel data"
    endian = "<" if tsuid.is_little_endian else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group, element) != PIXEL_DATA_TAG:
        return "no pixel data"
    if tsuid.is_implicit_VR:
        (length,), offset = struct.unpack(endian + "L", head[4:8]), 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"UT", b"SQ", b"UC", b"UR"):
        (length,), offset = struct.unpack(endian + "L", head[8:12]), 12
    else:
        (length,), offset = struct.unpack(endian + "H", head[6:8]), 8
    fp.seek(0, os.SEEK_END)
    available = fp.tell() - start - offset
    frames = header_checks.integer(ds, "NumberOfFrames", 1)
    if length == 0xFFFFFFFF:  # encapsulated (compressed) frames: each needs an 8-byte item header at least
        return None if available > 8 * frames else "truncated file (compressed pixel data missing)"
    rows, columns = header_checks.integer(ds, "Rows"), header_checks.integer(ds, "Columns")
    expected = rows * columns * frames * header_checks.integer(ds, "BitsAllocated", 16) // 8
    if available < min(length, expected):
        return f"truncated file (pixel data has {max(available, 0)} of {expected} bytes)"
    if not expected <= length <= expected + 1:  # + 1: an odd length is padded to even
        # pydicom would reshape whatever is there: a wrong size shows a scrambled image, never an error
        return f"its pixel data ({length} bytes) does not fit its image size ({frames} x {rows}x{columns}: {expected} bytes)"
    return None


def _describe(ref: FileRef, ds: Dataset | fast_scan.ScannedHeader) -> _Scanned:
    """The file's slices and geometry. Malformed positions, orientations and spacings count as absent
    (ordering falls back to instance numbers, spacing to 1 mm), never as NaN or a wrong-length vector."""
    tsuid = str(_transfer_syntax(ds))
    frames = header_checks.integer(ds, "NumberOfFrames", 1, low=1, high=header_checks.MAX_FRAMES)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    orientation = header_checks.orientation(_vector(
        _group_item(None, shared, "PlaneOrientationSequence"), ds, "ImageOrientationPatient", 6))
    measured = header_checks.spacing(_vector(
        _group_item(None, shared, "PixelMeasuresSequence"), ds, "PixelSpacing", 2))
    spacing = measured or (1.0, 1.0)
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    instance = _int(header_checks.first(ds.get("InstanceNumber")))
    slices = []
    for frame in range(frames):
        frame_group = per_frame[frame] if per_frame is not None and frame < len(per_frame) else None
        position_item = _group_item(frame_group, shared, "PlanePositionSequence")
        position = header_checks.vector(position_item, "ImagePositionPatient", 3) if position_item is not None \
            else (header_checks.vector(ds, "ImagePositionPatient", 3) if frames == 1 else None)
        transform_item = _group_item(frame_group, shared, "PixelValueTransformationSequence")
        slices.append(
            SliceRef(
                file=ref,
                frame=frame if frames > 1 else None,
                sop_uid=sop_uid if frames == 1 else f"{sop_uid}#{frame + 1}",
                # Frames of one file sort after each other in the instance-number fallback.
                instance=instance if frames == 1 else (instance or 0) * 10000 + frame + 1,
                position=position,
                hu=_hu_transform(ds, transform_item),
                transfer_syntax=tsuid,
            )
        )
    shape = (header_checks.integer(ds, "Rows"), header_checks.integer(ds, "Columns"))
    return _Scanned(slices, ds, shape, orientation, spacing, measured is not None)


def _vector(item: Dataset | None, ds, keyword: str, size: int) -> tuple[float, ...] | None:
    """A vector from a functional-group item when it has one, else from the top-level header."""
    if item is not None and keyword in item:
        return header_checks.vector(item, keyword, size)
    return header_checks.vector(ds, keyword, size)


def _hu_transform(ds: Dataset, transform_item: Dataset | None) -> HuTransform:
    source = transform_item if transform_item is not None and "RescaleSlope" in transform_item else ds
    slope, intercept = header_checks.rescale(source)
    padding = header_checks.integer(ds, "PixelPaddingValue", None)
    bits_stored = header_checks.integer(ds, "BitsStored", 16)
    signed = header_checks.integer(ds, "PixelRepresentation", 0) == 1
    # RSNA 2019 defect (found by Kaggle participants): 12-bit unsigned storage with an intercept
    # near 0 whose stored values wrapped; real HU = ((stored + 1000) mod 4096) - 1000.
    wrap = bits_stored == 12 and not signed and intercept > -100
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    if wrap:
        low, high = -1000, 3095
    hu_range = sorted((low * slope + intercept, high * slope + intercept))
    return HuTransform(slope, intercept, padding, wrap, (max(hu_range[0], AIR_HU), hu_range[1]))


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _group_item(frame_group, shared, macro: str) -> Dataset | None:
    for group in (frame_group, shared):
        if group is not None and group.get(macro):
            return group.get(macro)[0]
    return None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- grouping


def load(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    progress: ProgressCallback | None = None,
) -> LoadResult:
    """Open files, folders (recursively), zip archives and DICOMDIRs; group and order the CT found.

    Raises :class:`NoImagesFoundError` (with ``.skipped``) when nothing usable was found.
    """
    configure_pydicom()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = list(iter_candidates(paths))
    numbers = {str(item) if isinstance(item, FileRef) else item.path: n for n, item in enumerate(found, 1)}
    skipped: list[Skipped] = [item for item in found if isinstance(item, Skipped)]
    candidates = [item for item in found if isinstance(item, FileRef)]
    scanned: list[_Scanned] = []
    for start in range(0, len(candidates), SCAN_CHUNK):
        chunk = candidates[start:start + SCAN_CHUNK]
        fast = fast_scan.scan_headers([ref.path for ref in chunk if ref.member is None], SCAN_TAGS)
        for done, ref in enumerate(chunk, start + 1):
            header = fast.get(ref.path) if ref.member is None else None
            result = scan_file(ref) if header is None else _fast_result(ref, header)
            if isinstance(result, Skipped):
                skipped.append(result)
            else:
                scanned.append(result)
            if progress is not None:
                progress(done, len(candidates))
    # A CSV or TXT file that is not DICOM is a sidecar (labels, a manifest, notes), not a broken image.
    other_files = tuple(s.path for s in skipped if s.reason == NOT_DICOM
                        and Path(s.path).suffix.lower() in SIDECAR_SUFFIXES)
    sidecars = frozenset(other_files)
    skipped = [s for s in skipped if s.path not in sidecars]
    studies = _group(scanned, skipped) if scanned else []
    # Numbered in the order found, so a report without file names can still say which file.
    skipped = [dataclasses.replace(s, number=numbers.get(s.path)) for s in skipped]
    for item in skipped:
        log.info("skipped %s", item.anonymous(len(found)))  # never the name: file names may carry patient names
    if not studies:
        shown = "; ".join(s.anonymous(len(found)) for s in skipped[:3])
        raise NoImagesFoundError(
            f"No CT images found in {len(found)} file(s)"
            + (f" ({shown}{'; ...' if len(skipped) > 3 else ''})" if shown else "")
            + ". Open a folder, zip or DICOMDIR that holds head CT in DICOM format.",
            skipped,
        )
    return LoadResult(tuple(studies), tuple(skipped), len(found), other_files)


def _fast_result(ref: FileRef, header: fast_scan.ScannedHeader) -> _Scanned | Skipped:
    """A header the fast scan vouched for still passes the same limits as the pydicom path."""
    problem = decoder_problem(header.file_meta["TransferSyntaxUID"]) or header_checks.image_problem(header)
    return Skipped(str(ref), problem) if problem else _describe_checked(ref, header)


def _group(scanned: list[_Scanned], skipped: list[Skipped]) -> list[Study]:
    by_study: dict[str, dict[str, list[_Scanned]]] = defaultdict(lambda: defaultdict(list))
    for item in scanned:
        by_study[item.study_uid][item.series_uid].append(item)
    studies = []
    for study_uid, series_map in by_study.items():
        series_map = _one_patient(series_map, skipped)
        first = next(iter(series_map.values()))[0]
        series = [_make_series(uid, items, skipped) for uid, items in series_map.items()]
        series = sorted((s for s in series if s is not None), key=lambda s: (s.number or 0, s.description))
        if series:
            studies.append(Study(uid=study_uid, date=first.study_date, description=first.study_description,
                                 patient=first.patient, series=tuple(series)))
    return sorted(studies, key=lambda s: (s.date, s.uid))


def _one_patient(series_map: dict[str, list[_Scanned]], skipped: list[Skipped]) -> dict[str, list[_Scanned]]:
    """One patient per study: files of another patient that reuse the study's UIDs (a copy edited by hand, an
    anonymiser that kept the UIDs) must never be read as the same head. The patient with most files keeps the
    study; the others' files are reported."""
    def patient_of(item: _Scanned):
        return item.patient.id, item.patient.name

    counts = Counter(patient_of(i) for items in series_map.values() for i in items)
    if len(counts) == 1:
        return series_map
    majority = counts.most_common(1)[0][0]
    kept: dict[str, list[_Scanned]] = {}
    for uid, items in series_map.items():
        for item in items:
            if patient_of(item) == majority:
                kept.setdefault(uid, []).append(item)
            else:
                skipped.append(Skipped(str(item.slices[0].file),
                                       "another patient's image under the same study UID as the study opened"))
    return kept


def _make_series(uid: str, items: list[_Scanned], skipped: list[Skipped]) -> Series | None:
    # One matrix size, one orientation and one grey scale per series: the majority wins, the rest is reported
    # (a series that mixed MONOCHROME1 and MONOCHROME2 was shown all inverted or none, as its first file said).
    shape = Counter(i.shape for i in items).most_common(1)[0][0]
    orientations = Counter(_rounded(i.orientation) for i in items if i.shape == shape)
    orientation_key = orientations.most_common(1)[0][0]
    inverted = Counter(i.monochrome1 for i in items if i.shape == shape).most_common(1)[0][0]
    kept, seen_sops = [], set()
    for item in items:
        if item.shape != shape:
            skipped.append(Skipped(str(item.slices[0].file), f"image size {item.shape} differs from its series {shape}"))
        elif _rounded(item.orientation) != orientation_key:
            skipped.append(Skipped(str(item.slices[0].file), "orientation differs from the rest of its series"))
        elif item.monochrome1 != inverted:
            skipped.append(Skipped(str(item.slices[0].file), f"MONOCHROME{1 if item.monochrome1 else 2} differs from "
                                   f"the rest of its series (MONOCHROME{1 if inverted else 2})"))
        elif item.slices[0].sop_uid and item.slices[0].sop_uid in seen_sops:
            skipped.append(Skipped(str(item.slices[0].file), "duplicate of another file (same SOP Instance UID)"))
        else:
            seen_sops.add(item.slices[0].sop_uid)
            kept.append(item)
    reference = kept[0]
    ordered, geometry = order_slices([s for i in kept for s in i.slices], reference.orientation)
    return Series(
        uid=uid,
        description=reference.series_description,
        number=reference.series_number,
        slices=tuple(ordered),
        rows=shape[0],
        columns=shape[1],
        pixel_spacing=(reference.spacing[0], reference.spacing[-1]),
        orientation=reference.orientation,
        geometry=geometry,
        file_window=reference.file_window,
        acquisition=reference.acquisition,
        pixel_spacing_known=reference.spacing_known,
        monochrome1=reference.monochrome1,
    )


def _rounded(orientation: tuple[float, ...] | None):
    return None if orientation is None else tuple(round(v, 3) for v in orientation)


def _file_window(ds: Dataset) -> Window | None:
    try:
        center = float(header_checks.first(ds.get("WindowCenter")))
        width = float(header_checks.first(ds.get("WindowWidth")))
    except Exception:  # noqa: BLE001 - absent, malformed or of an unknown VR: no stored window
        return None
    # CT values span at most 16 bits: a wider "window" (1e30 was seen) would show one flat grey
    plausible = 0 < width <= 65536 and abs(center) <= 65536 and math.isfinite(center + width)
    return Window("file", center, width) if plausible else None
