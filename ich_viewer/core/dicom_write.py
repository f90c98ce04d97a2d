"""Writing a CT series as valid DICOM (the phantom and test fixtures); reading lives in dicom_io."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid


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
    seed: int,
    series_description: str,
    study_description: str,
    window: tuple[float, float] = (40.0, 80.0),
    storage: str = "int16",
    study_date: str = "20260101",
) -> list[Path]:
    """Write ``hu`` [Z, H, W] as one CT Image Storage file per slice; UIDs derive from ``seed``.

    ``storage="int16"``: signed 16-bit, intercept 0. ``storage="uint12"``: unsigned 12-bit with
    intercept -1024, the other layout real scanners use (the loader must handle both).
    """
    if storage not in ("int16", "uint12"):
        raise ValueError(f"storage must be 'int16' or 'uint12', got {storage!r}")
    out = Path(out_dir)
    n, rows, cols = hu.shape
    uid = lambda *parts: generate_uid(entropy_srcs=["ich-viewer-phantom", str(seed), *map(str, parts)])  # noqa: E731
    study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame")
    x0, y0 = -(cols - 1) / 2 * pixel_spacing, -(rows - 1) / 2 * pixel_spacing
    paths = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid("image", k)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = CTImageStorage
        ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, patient_id, "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate = ds.SeriesDate = study_date
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
        ds.StudyDescription, ds.SeriesDescription = study_description, series_description
        ds.Manufacturer, ds.KVP = "ICH Viewer synthetic phantom", 120
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), float(z[k])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [round(pixel_spacing, 6)] * 2
        ds.SliceThickness = ds.SpacingBetweenSlices = slice_thickness
        ds.SliceLocation = float(z[k])
        ds.WindowCenter, ds.WindowWidth = window
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns, ds.BitsAllocated = rows, cols, 16
        values = np.round(hu[k])
        if storage == "int16":
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.RescaleIntercept = 16, 15, 1, 0
            stored = np.clip(values, -32768, 32767).astype(np.int16)
        else:
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.RescaleIntercept = 12, 11, 0, -1024
            stored = np.clip(values + 1024, 0, 4095).astype(np.uint16)
        ds.RescaleSlope, ds.RescaleType = 1, "HU"
        ds.PixelData = stored.tobytes()
        path = out / file_names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
