"""Writing a CT series as valid DICOM (the phantom, test fixtures); reading lives in dicom_io.

One CT Image Storage file per slice, Explicit VR Little Endian, with the geometry, rescale and
window tags a viewer needs. Two pixel layouts, because real scanners use both and the loader
must handle both: ``"int16"`` (signed, intercept 0) and ``"uint12"`` (unsigned 12 bits stored in
16, intercept -1024).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

STORAGES = ("int16", "uint12")


def _ds(value: float) -> str:
    """A Decimal String (at most 16 characters) that keeps as much precision as fits."""
    for digits in range(10, 0, -1):
        text = f"{float(value):.{digits}f}".rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        if len(text) <= 16:
            return text
    return f"{float(value):.6g}"


def deterministic_uid(*parts: object) -> str:
    """A valid UID (pydicom's prefix + a hash of ``parts``): the same parts always give the same UID."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def read_maker(path: str | Path) -> tuple[str, str] | None:
    """``(Manufacturer, ManufacturerModelName)`` of a DICOM file, or None if it is not readable DICOM.

    Lets a writer recognise its own earlier output before replacing it (never a user's files).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Manufacturer", "ManufacturerModelName"])
    except Exception:  # noqa: BLE001 - anything unreadable is simply "not ours"
        return None
    return str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", ""))


def stored_values(hu: np.ndarray, storage: str) -> tuple[np.ndarray, int]:
    """``(stored pixels, RescaleIntercept)`` for ``hu`` in a storage layout (slope 1).

    Values are rounded to whole HU and clipped to what the layout can hold: int16 the whole int16
    range, uint12 -1024..3071 HU.
    """
    values = np.round(np.asarray(hu, np.float64))
    if storage == "int16":
        return np.clip(values, -32768, 32767).astype(np.int16), 0
    if storage == "uint12":
        return np.clip(values + 1024, 0, 4095).astype(np.uint16), -1024
    raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")


def write_ct_series(
    out_dir: str | Path,
    hu: np.ndarray,
    *,
    z: Sequence[float],
    pixel_spacing: float,
    slice_thickness: float,
    file_names: Sequence[str],
    patient_name: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    sop_uids: Sequence[str],
    series_description: str,
    study_description: str,
    window: tuple[float, float] = (40.0, 80.0),
    storage: str = "int16",
    study_date: str = "20260101",
    frame_uid: str | None = None,
    manufacturer: str = "ICH Viewer",
    model_name: str = "",
    patient_birth_date: str = "19700101",
    patient_sex: str = "O",
    series_number: int = 1,
) -> list[Path]:
    """Write ``hu`` [Z, H, W] (HU) as one CT Image Storage file per slice into ``out_dir``.

    Slice k gets ``z[k]`` as ImagePositionPatient z, InstanceNumber k + 1, ``sop_uids[k]`` and the
    name ``file_names[k]``. x/y of ImagePositionPatient put the image centre at the origin; the
    orientation is axial [1,0,0,0,1,0] (rows anterior->posterior, columns right->left). Files are
    written with ``enforce_file_format=True``, so each one is a conformant Part 10 file.
    Returns the paths in slice order.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"hu must be [Z, H, W], got shape {hu.shape}")
    n, rows, cols = hu.shape
    if not (len(z) == len(file_names) == len(sop_uids) == n):
        raise ValueError(f"need {n} z positions, file names and SOP UIDs (one per slice)")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame_uid = frame_uid or deterministic_uid(series_uid, "frame-of-reference")
    x0, y0 = -(cols - 1) / 2 * pixel_spacing, -(rows - 1) / 2 * pixel_spacing
    spacing = float(z[1]) - float(z[0]) if n > 1 else float(slice_thickness)
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uids[k]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uids[k]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", manufacturer, model_name
        ds.StudyDescription, ds.SeriesDescription = study_description[:64], series_description[:64]  # LO
        ds.PatientName, ds.PatientID = patient_name, patient_id
        ds.PatientBirthDate, ds.PatientSex = patient_birth_date, patient_sex
        ds.BodyPartExamined, ds.KVP, ds.PatientPosition = "HEAD", "120", "HFS"
        ds.SliceThickness, ds.SpacingBetweenSlices = _ds(slice_thickness), _ds(spacing)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyID, ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = "1", series_number, 1, k + 1
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z[k])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = _ds(z[k])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [_ds(pixel_spacing), _ds(pixel_spacing)]
        stored, intercept = stored_values(hu[k], storage)
        ds.BitsAllocated = 16
        if storage == "int16":
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        else:
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = _ds(window[0]), _ds(window[1])
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = stored.tobytes()
        path = out / file_names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
