"""CT-ICH (PhysioNet, Hssayeni et al. 2020): the original NIfTI layout and the brain-window PNG export.

Orientation, checked by eye against the real CQ500 series (face up in DICOM display): the CT-ICH
arrays hold the face on the right and the scanner table on the left, i.e. rows run patient
right->left and columns posterior->anterior (NIfTI array order after the usual DICOM->NIfTI row
flip). ``np.rot90(a, 1)`` maps that to display order (rows anterior->posterior, columns right->left).
Left-right cannot be confirmed from anatomy; training flips left-right at random anyway.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from training.data.base import CLASSES, SliceRecord

PNG_WINDOW = (40.0, 120.0)  # level, width of the export: HU = -20 + pixel / 255 * 120
PNG_HU_RANGE = (PNG_WINDOW[0] - PNG_WINDOW[1] / 2, PNG_WINDOW[0] + PNG_WINDOW[1] / 2)


def to_display(array: np.ndarray) -> np.ndarray:
    """CT-ICH array order -> DICOM display order (see the module docstring)."""
    return np.ascontiguousarray(np.rot90(array, 1))


def _patient_number(patient_id: str) -> int:
    match = re.search(r"(\d+)$", patient_id)
    if not match:
        raise ValueError(f"cannot read a patient number from {patient_id!r}")
    return int(match.group(1))


class CtichPngSource:
    """``image/<k>.png`` (8-bit, window 40/120), ``label/<k>.png`` masks and ``labels.csv``."""

    name = "ctich"
    hu_range = PNG_HU_RANGE

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "labels.csv").is_file():
            raise FileNotFoundError(f"{self.root} is not a CT-ICH PNG export: labels.csv is missing")

    def records(self) -> list[SliceRecord]:
        with open(self.root / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        missing = [c for c in ("image", "patient_id", "slice_number", *CLASSES) if rows and c not in rows[0]]
        if missing:
            raise ValueError(f"{self.root / 'labels.csv'} lacks column(s) {', '.join(missing)}")
        out = []
        for row in rows:
            number, slice_number = _patient_number(row["patient_id"]), int(row["slice_number"])
            out.append(SliceRecord(
                f"ctich/{number}/{slice_number}", row["patient_id"], row["patient_id"], slice_number,
                tuple(int(row[c]) for c in CLASSES), self.name,
                {"image": str(self.root / row["image"]), "mask": str(self.root / row["mask"]) if row.get("mask") else ""}))
        return out

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        pixels = np.asarray(Image.open(record.extra["image"]).convert("L"), np.float32)
        return to_display(PNG_HU_RANGE[0] + pixels / 255.0 * PNG_WINDOW[1]).astype(np.float32)

    def read_mask(self, record: SliceRecord) -> np.ndarray:
        if not record.extra.get("mask"):
            return np.zeros((256, 256), bool)
        return to_display(np.asarray(Image.open(record.extra["mask"]).convert("L")) > 0)


class CtichNiftiSource:
    """The PhysioNet release: ``ct_scans/<NNN>.nii`` (HU), ``masks/<NNN>.nii`` and the diagnosis CSV."""

    name = "ctich"
    hu_range = None
    _COLUMNS = {"epidural": "Epidural", "intraparenchymal": "Intraparenchymal", "intraventricular": "Intraventricular",
                "subarachnoid": "Subarachnoid", "subdural": "Subdural"}

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.table = self.root / "hemorrhage_diagnosis_raw_ct.csv"
        if not self.table.is_file() or not (self.root / "ct_scans").is_dir():
            raise FileNotFoundError(f"{self.root} is not a CT-ICH NIfTI release: need ct_scans/ and "
                                    "hemorrhage_diagnosis_raw_ct.csv")
        self._volume = lru_cache(maxsize=4)(self._load)

    def records(self) -> list[SliceRecord]:
        with open(self.table, newline="") as f:
            rows = list(csv.DictReader(f))
        out = []
        for row in rows:
            number, slice_number = int(row["PatientNumber"]), int(row["SliceNumber"])
            labels = (1 - int(row["No_Hemorrhage"]), *(int(row[self._COLUMNS[c]]) for c in CLASSES[1:]))
            patient = f"CTICH_{number:03d}"
            out.append(SliceRecord(f"ctich/{number}/{slice_number}", patient, patient, slice_number, labels,
                                   self.name, {"number": number, "slice": slice_number}))
        return out

    def _load(self, folder: str, number: int) -> np.ndarray:
        import nibabel

        path = self.root / folder / f"{number:03d}.nii"
        if not path.is_file():
            path = self.root / folder / f"{number}.nii"
        return np.asanyarray(nibabel.load(path).dataobj)

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        volume = self._volume("ct_scans", record.extra["number"])
        return to_display(np.asarray(volume[:, :, record.extra["slice"] - 1], np.float32))

    def read_mask(self, record: SliceRecord) -> np.ndarray:
        volume = self._volume("masks", record.extra["number"])
        return to_display(np.asarray(volume[:, :, record.extra["slice"] - 1]) > 0)
