"""Build test files from real DICOM: re-encodings, header edits and broken copies.

Every file starts from a real one (pydicom's test files, pydicom-data, ../shared/data); only the
encoding or a header tag changes, so decoders see real pixel streams.
"""

from __future__ import annotations

import copy as _copy
import shutil
from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset

from tests.conftest import dicom_testfile


def read(name_or_path: str) -> Dataset:
    path = name_or_path if Path(name_or_path).is_file() else dicom_testfile(name_or_path)
    return pydicom.dcmread(path)


def relabel_as_ct(name: str, dst: Path, **tags) -> Path:
    """Copy a real (e.g. MR or NM) file with Modality set to CT, pixel stream untouched."""
    ds = read(name)
    ds.Modality = "CT"
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(dst)
    return dst


def save_with_syntax(ds: Dataset, dst: Path, syntax: str) -> Path:
    """Write an uncompressed dataset with another transfer syntax (compressing where needed)."""
    ds = _copy.deepcopy(ds)  # Dataset.copy() would share file_meta with the caller
    if syntax in (uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(dst, implicit_vr=syntax == uid.ImplicitVRLittleEndian, little_endian=True)
    else:
        ds.compress(syntax)
        ds.save_as(dst)
    return dst


def truncated_copy(src: str, dst: Path, keep_fraction: float = 0.6) -> Path:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: int(len(data) * keep_fraction)])
    return dst


def copy(src: str | Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def ct_slice_from_hu(hu: np.ndarray, dst: Path, *, z: float, series_uid: str, study_uid: str,
                     instance: int, template: str = "CT_small.dcm", orientation=(1, 0, 0, 0, 1, 0)) -> Path:
    """A CT slice with given HU, based on a real CT header (int16, intercept 0)."""
    ds = read(template)
    stored = np.round(hu).astype(np.int16)
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = stored.tobytes()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = uid.generate_uid(entropy_srcs=[series_uid, str(instance), str(z)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = list(orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    ds.ImagePositionPatient = [float(v) for v in np.asarray([-60.0, -60.0, 0.0]) + z * normal]
    # CT_small.dcm records a contrast agent (ISOVUE300/100); these slices are plain made-up HU.
    for keyword in ("PixelPaddingValue", "SliceLocation", "ContrastBolusAgent", "ContrastBolusRoute"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(dst)
    return dst
