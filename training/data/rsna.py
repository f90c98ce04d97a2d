"""RSNA 2019 Intracranial Hemorrhage (Kaggle layout): ``stage_2_train.csv`` and a folder of DICOMs.

Known defects handled: duplicated label rows (deduplicated, disagreements counted and resolved
to positive), a corrupt DICOM (skipped with its reason), the 12-bit intercept wrap (the core's HU
code fixes it). Patient and study come from the DICOM headers, never from file names.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ich_viewer.core.dicom_io import decode_slice, scan_file
from ich_viewer.core.series import FileRef, Skipped, SliceRef
from training.data.base import CLASSES, SliceRecord

_INDEX_FIELDS = ["id", "path", "patient", "study", "z", "frame_sop", "transfer_syntax", "slope", "intercept",
                 "padding", "wrap"]


def read_labels(path: str | Path) -> tuple[dict[str, tuple[int, ...]], int]:
    """``ID_<hex>_<subtype>,Label`` rows -> {ID_<hex>: six labels in CLASSES order}, disagreements."""
    labels: dict[str, dict[str, int]] = defaultdict(dict)
    disagreements = 0
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            image, _, subtype = row["ID"].rpartition("_")
            value = int(row["Label"])
            seen = labels[image].get(subtype)
            if seen is not None and seen != value:
                disagreements += 1
            labels[image][subtype] = max(value, seen or 0)
    out = {}
    for image, values in labels.items():
        if all(c in values for c in CLASSES):
            out[image] = tuple(values[c] for c in CLASSES)
    return out, disagreements


def _scan(path: str) -> dict | tuple[str, str]:
    result = scan_file(FileRef(path))
    if isinstance(result, Skipped):
        return path, result.reason
    ref: SliceRef = result.slices[0]
    normal = np.cross(result.orientation[:3], result.orientation[3:]) if result.orientation else None
    z = float(np.dot(ref.position, normal)) if ref.position and normal is not None else float(ref.instance or 0)
    ds = result.ds
    return {"id": Path(path).stem, "path": path, "patient": str(ds.get("PatientID", "") or Path(path).stem),
            "study": result.study_uid, "z": z, "frame_sop": ref.sop_uid, "transfer_syntax": ref.transfer_syntax,
            "slope": ref.hu.slope, "intercept": ref.hu.intercept,
            "padding": "" if ref.hu.padding_value is None else ref.hu.padding_value,
            "wrap": int(ref.hu.wrap_12bit)}


class RsnaSource:
    name = "rsna"
    hu_range = None

    def __init__(self, root: str | Path, labels_csv: str | Path | None = None, workers: int = 1,
                 index_cache: str | Path | None = None, progress: bool = False):
        self.root, self.labels_csv = Path(root), labels_csv
        self.workers, self.progress = workers, progress
        self.index_cache = Path(index_cache) if index_cache else None
        self.skipped: list[tuple[str, str]] = []
        self.label_disagreements = 0
        if not self.root.is_dir():
            raise FileNotFoundError(f"RSNA image folder {self.root} not found")

    def _index(self) -> list[dict]:
        if self.index_cache is not None and self.index_cache.is_file():
            with open(self.index_cache, newline="") as f:
                return list(csv.DictReader(f))
        paths = sorted(str(p) for p in self.root.rglob("*.dcm"))
        rows = []
        pool = ProcessPoolExecutor(self.workers) if self.workers > 1 else None
        results = pool.map(_scan, paths, chunksize=256) if pool else map(_scan, paths)
        for result in tqdm(results, total=len(paths), desc="scan RSNA headers", disable=not self.progress):
            if isinstance(result, tuple):
                self.skipped.append(result)
            else:
                rows.append(result)
        if pool:
            pool.shutdown()
        if self.index_cache is not None:
            self.index_cache.parent.mkdir(parents=True, exist_ok=True)
            with open(self.index_cache, "w", newline="") as f:
                writer = csv.DictWriter(f, _INDEX_FIELDS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
        return rows

    def records(self) -> list[SliceRecord]:
        rows = self._index()
        labels = None
        if self.labels_csv is not None:
            labels, self.label_disagreements = read_labels(self.labels_csv)
        by_study = defaultdict(list)
        for row in rows:
            by_study[row["study"]].append(row)
        out = []
        for study, members in by_study.items():
            kept = []
            for row in sorted(members, key=lambda r: (float(r["z"]), r["id"])):
                label = None if labels is None else labels.get(row["id"])
                if labels is not None and label is None:
                    self.skipped.append((row["path"], "no label rows in the label file"))
                else:
                    kept.append((row, label))
            for index, (row, label) in enumerate(kept):
                out.append(SliceRecord(f"rsna/{row['id']}", row["patient"], study, index, label, self.name, row))
        return out

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        from ich_viewer.core.series import HuTransform

        row = record.extra
        transform = HuTransform(float(row["slope"]), float(row["intercept"]),
                                None if row["padding"] in ("", None) else int(row["padding"]), bool(int(row["wrap"])))
        ref = SliceRef(file=FileRef(row["path"]), frame=None, sop_uid=row["frame_sop"], instance=None, position=None,
                       hu=transform, transfer_syntax=row["transfer_syntax"])
        return decode_slice(ref)
