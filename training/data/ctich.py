"""CT-ICH (PhysioNet, Hssayeni et al. 2020): the original NIfTI release and the brain-window PNG export.

Orientation (checked by eye: CT-ICH PNG slices of several patients beside the real CQ500-CT-0 DICOM
series at the orbit, skull-base and ventricle levels). The CT-ICH arrays are in raw NIfTI array
order: the face is on the RIGHT of the array and the scanner table (posterior) on the LEFT, so
array columns run posterior->anterior (NIfTI j = +A) and array rows are the left-right axis.

* Anterior up: ``np.rot90(a, 1)`` (counter-clockwise) moves the right-hand column (face) to the top
  row. The 180-degree alternative ``np.rot90(a, -1)`` would put the face at the bottom; after
  ``rot90(a, 1)`` the table arc lies below the head on 68 of the 70 patients where it is visible,
  and mid-level heads are taller than wide on 72 of 75 (the test suite checks both).
* Left-right, by convention (it cannot be confirmed from anatomy): a DICOM axial image has rows
  anterior->posterior and columns patient right->left (LPS: x grows to the patient's left). The
  usual DICOM->NIfTI converters (dcm2niix, dicom2nifti) keep the DICOM column order as NIfTI i
  (growing to the patient's left) and flip the rows so that j grows anteriorly: LAS storage, an
  affine ``diag(-1, 1, 1)`` in RAS+ world terms, ``nifti[i, j] == dicom[H-1-j, i]``. That is exactly
  the "face on the right" seen here (a converter that keeps the DICOM row order, such as ITK's LPS
  writer, would have put the face on the left). Inverting: ``dicom[r, c] == nifti[c, H-1-r]`` ==
  ``np.rot90(nifti, 1)[r, c]``, so no flip is needed: the patient's right lands on the image's left
  (radiological convention). Were a volume stored RAS (i growing to the right), the result would be
  mirrored left-right; the released NIfTI headers were not available to confirm the affine, and
  training flips left-right at random anyway.

The PNG export is the same slices, windowed at level 40 / width 120 (HU = -20 + p / 255 * 120,
only -20..100 recoverable) and 2x2 area-averaged to 256x256, in the same raw array order, so both
readers share :func:`to_display` and give the same record keys (``ctich/<patient number>/<slice>``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ich_viewer.core.contract import CLASSES
from training.data.base import CachedReader, SliceRecord

__all__ = ["CtichNiftiSource", "CtichPngSource", "PNG_HU_RANGE", "PNG_WINDOW", "to_display", "from_display",
           "window_to_hu"]

PNG_WINDOW = (40.0, 120.0)  # level, width of the export: HU = -20 + pixel / 255 * 120
PNG_HU_RANGE = (PNG_WINDOW[0] - PNG_WINDOW[1] / 2, PNG_WINDOW[0] + PNG_WINDOW[1] / 2)
PNG_COLUMNS = ("image", "patient_id", "slice_number", *CLASSES)
NIFTI_COLUMNS = ("PatientNumber", "SliceNumber", "Intraventricular", "Intraparenchymal", "Subarachnoid", "Epidural",
                 "Subdural", "No_Hemorrhage")
#: CLASSES subtype -> column of hemorrhage_diagnosis_raw_ct.csv ("any" is 1 - No_Hemorrhage).
NIFTI_SUBTYPE_COLUMNS = {"epidural": "Epidural", "intraparenchymal": "Intraparenchymal",
                         "intraventricular": "Intraventricular", "subarachnoid": "Subarachnoid",
                         "subdural": "Subdural"}


def window_to_hu(pixels: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """float32 HU of 8-bit pixels exported at ``window`` (level, width): 0 is level - width/2, 255 level + width/2."""
    level, width = window
    return np.float32(level - width / 2) + pixels.astype(np.float32) * np.float32(width / 255.0)


def to_display(array: np.ndarray) -> np.ndarray:
    """CT-ICH raw array order [H, W] -> DICOM display order (face up, patient right on the left)."""
    return np.ascontiguousarray(np.rot90(array, 1))


def from_display(array: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_display` (display order -> CT-ICH raw array order)."""
    return np.ascontiguousarray(np.rot90(array, -1))


def _patient_number(patient_id: str) -> int:
    match = re.search(r"(\d+)\s*$", patient_id)
    if not match:
        raise ValueError(f"cannot read a patient number from the patient id {patient_id!r} (expected e.g. CTICH_049)")
    return int(match.group(1))


def png_export(root: str | Path, what: str, expected: str) -> tuple[Path, Path]:
    """(folder, its labels.csv) of a PNG export such as CT-ICH's; FileNotFoundError naming ``what`` is missing."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder {root} does not exist")
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(f"{root} is not a {what} export: labels.csv is missing (expected {expected})")
    return root, labels_csv


def _read_table(path: Path, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path} is not {what}: it lacks the column(s) {', '.join(missing)} "
                             f"(found {', '.join(header) or 'no header'})")
        reader.fieldnames = header
        return [row for row in reader if any((v or "").strip() for v in row.values())]


def _flag(value: str, path: Path, line: int, column: str) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise ValueError(f"{path}, data row {line}: {column} is {value!r}, not 0 or 1") from None
    if number not in (0, 1):
        raise ValueError(f"{path}, data row {line}: {column} is {number}, not 0 or 1")
    return number


def _check_unique(records: list[SliceRecord], path: Path) -> None:
    seen: set[str] = set()
    for record in records:
        if record.key in seen:
            raise ValueError(f"{path} lists slice {record.index} of {record.patient} twice ({record.key})")
        seen.add(record.key)


class CtichPngSource:
    """The brain-window PNG export: ``image/<k>.png`` (8-bit, window 40/120), ``label/<k>.png`` masks, ``labels.csv``.

    Records are in ``labels.csv`` order; the stored pixels cover only -20..100 HU (:attr:`hu_range`).
    """

    name = "ctich"
    hu_range = PNG_HU_RANGE
    classes = CLASSES  # labels all six

    def __init__(self, root: str | Path, name: str | None = None):
        self.name = name or type(self).name  # SliceRecord.source; a config may rename a source (train_only)
        self.root, self.labels_csv = png_export(root, "CT-ICH PNG", "labels.csv, image/<k>.png and label/<k>.png")

    def records(self) -> list[SliceRecord]:
        rows = _read_table(self.labels_csv, PNG_COLUMNS, "a CT-ICH PNG label table")
        out = []
        for line, row in enumerate(rows, 1):
            number, slice_number = _patient_number(row["patient_id"]), int(row["slice_number"])
            labels = tuple(_flag(row[c], self.labels_csv, line, c) for c in CLASSES)
            mask = (row.get("mask") or "").strip()
            out.append(SliceRecord(
                key=f"ctich/{number}/{slice_number}", patient=row["patient_id"].strip(),
                study=row["patient_id"].strip(), index=slice_number, labels=labels, source=self.name,
                extra={"image": str(self.root / row["image"].strip()), "mask": str(self.root / mask) if mask else ""}))
        _check_unique(out, self.labels_csv)
        if out and not Path(out[0].extra["image"]).is_file():
            raise FileNotFoundError(f"{self.labels_csv} lists {out[0].extra['image']}, which does not exist: "
                                    "is this the PNG export's own folder?")
        return out

    @staticmethod
    def _read_png(path: str) -> np.ndarray:
        if not path or not Path(path).is_file():
            raise FileNotFoundError(f"CT-ICH PNG {path or '(none listed)'} does not exist")
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "1", "I;16", "I"):
                image = image.convert("L")
            pixels = np.asarray(image)
        if pixels.ndim != 2:
            raise ValueError(f"{path} is not a single-channel image (shape {pixels.shape})")
        return pixels

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        pixels = self._read_png(record.extra["image"])
        if pixels.dtype != np.uint8:
            raise ValueError(f"{record.extra['image']} is not 8-bit ({pixels.dtype}); the CT-ICH export is")
        return to_display(window_to_hu(pixels, PNG_WINDOW))

    def read_mask(self, record: SliceRecord) -> np.ndarray:
        """bool [H, W] hemorrhage mask in display orientation (all False when none is listed)."""
        if not record.extra.get("mask"):
            return np.zeros(self._read_png(record.extra["image"]).shape[::-1], bool)
        return to_display(self._read_png(record.extra["mask"]) > 0)


class CtichNiftiSource(CachedReader):
    """The PhysioNet release: ``ct_scans/<NNN>.nii`` (HU), ``masks/<NNN>.nii``, ``hemorrhage_diagnosis_raw_ct.csv``.

    Slice k of patient p is ``data[:, :, k - 1]``. Volumes are opened lazily, memory-mapped, and kept
    in a small LRU cache (``cache_size`` volumes); only the requested slice is read. Patients whose
    CT volume is missing are left out and listed in :attr:`skipped`.
    """

    name = "ctich"
    hu_range = None
    classes = CLASSES  # labels all six

    def __init__(self, root: str | Path, cache_size: int = 4, name: str | None = None):
        self.name = name or type(self).name  # SliceRecord.source; a config may rename a source (train_only)
        self.root = Path(root).expanduser().resolve()
        self.table = self.root / "hemorrhage_diagnosis_raw_ct.csv"
        if not self.root.is_dir():
            raise FileNotFoundError(f"CT-ICH folder {self.root} does not exist")
        if not self.table.is_file() or not (self.root / "ct_scans").is_dir():
            raise FileNotFoundError(f"{self.root} is not a CT-ICH NIfTI release: it needs ct_scans/<NNN>.nii, "
                                    "masks/<NNN>.nii and hemorrhage_diagnosis_raw_ct.csv")
        self.cache_size = cache_size
        self.skipped: list[tuple[str, str]] = []
        self._init_cache()

    def _volume_path(self, folder: str, number: int) -> Path | None:
        for name in (f"{number:03d}.nii", f"{number}.nii", f"{number:03d}.nii.gz", f"{number}.nii.gz"):
            path = self.root / folder / name
            if path.is_file():
                return path
        return None

    def records(self) -> list[SliceRecord]:
        rows = _read_table(self.table, NIFTI_COLUMNS, "CT-ICH's hemorrhage_diagnosis_raw_ct.csv")
        self.skipped = []
        out, missing = [], set()
        for line, row in enumerate(rows, 1):
            number, slice_number = int(row["PatientNumber"]), int(row["SliceNumber"])
            ct = self._volume_path("ct_scans", number)
            if ct is None:
                if number not in missing:
                    missing.add(number)
                    self.skipped.append((str(self.root / "ct_scans" / f"{number:03d}.nii"), "CT volume missing"))
                continue
            mask = self._volume_path("masks", number)
            labels = (1 - _flag(row["No_Hemorrhage"], self.table, line, "No_Hemorrhage"),
                      *(_flag(row[NIFTI_SUBTYPE_COLUMNS[c]], self.table, line, NIFTI_SUBTYPE_COLUMNS[c])
                        for c in CLASSES[1:]))
            patient = f"CTICH_{number:03d}"  # the PNG export's patient_id
            out.append(SliceRecord(
                key=f"ctich/{number}/{slice_number}", patient=patient, study=patient, index=slice_number,
                labels=labels, source=self.name,
                extra={"ct": str(ct), "mask": str(mask) if mask else "", "slice": slice_number}))
        _check_unique(out, self.table)
        return out

    @staticmethod
    def _load(path: str):
        import nibabel

        image = nibabel.load(path, mmap=True)
        if len(image.shape) < 3:
            raise ValueError(f"{path} is not a 3-D volume (shape {image.shape})")
        return image.dataobj  # an ArrayProxy: slicing it reads (and rescales) only that slice

    def _slice(self, path: str, slice_number: int) -> np.ndarray:
        proxy = self._cached(path)  # open volumes (memory-mapped proxies), CachedReader's LRU
        depth = proxy.shape[2]
        if not 1 <= slice_number <= depth:
            raise IndexError(f"slice {slice_number} is outside {path}, which has slices 1..{depth}")
        data = np.asarray(proxy[:, :, slice_number - 1])
        return data.reshape(data.shape[:2])

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        return to_display(self._slice(record.extra["ct"], record.extra["slice"]).astype(np.float32))

    def read_mask(self, record: SliceRecord) -> np.ndarray:
        """bool [H, W] hemorrhage mask in display orientation (all False when the patient has no mask file)."""
        if not record.extra.get("mask"):
            return np.zeros(self.read_hu(record).shape, bool)
        return to_display(self._slice(record.extra["mask"], record.extra["slice"]) > 0)
