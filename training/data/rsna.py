"""RSNA 2019 Intracranial Hemorrhage (Kaggle layout): a folder of ``ID_<hex>.dcm`` and ``stage_2_train.csv``.

Known defects handled:

* duplicated label rows: deduplicated; where duplicates disagree the maximum (positive) wins and
  :attr:`RsnaSource.label_disagreements` counts it (:attr:`label_duplicates` counts all repeats);
* a corrupt or unreadable DICOM: skipped, listed in :attr:`RsnaSource.skipped` with the core's reason;
* images without (complete) label rows when a label file is given: skipped and listed too;
* the 12-bit intercept wrap and out-of-field pixels: handled by the core's HU code (``decode_slice``).

Patient and study come from the DICOM headers (PatientID, StudyInstanceUID), never from file names;
a slice's ``index`` is its rank within its study by ImagePositionPatient projected on the slice
normal. Scanning all 752k headers runs in a process pool and can be kept in an ``index_cache`` CSV
so that it happens once (delete the file to rescan after the folder changes).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.dicom_io import scan_file
from ich_viewer.core.dicom_pixels import decode_slice
from ich_viewer.core.phantom import RSNA_ORDER
from ich_viewer.core.series import FileRef, HuTransform, Skipped, SliceRef, project_on_normal
from training.data.base import SliceRecord

__all__ = ["LabelTable", "RsnaSource", "read_labels"]

#: Columns of the index cache; ``reason`` is non-empty for a skipped file (its other fields are blank).
INDEX_FIELDS = ("id", "path", "patient", "study", "z", "sop_uid", "transfer_syntax", "slope", "intercept",
                "padding", "wrap", "reason")


class LabelTable(dict):
    """{``ID_<hex>``: six labels in CLASSES order} plus what deduplication found."""

    duplicates: int = 0  # rows that repeated an (ID, subtype) already read
    disagreements: int = 0  # of those, rows whose value differed (the maximum was kept)
    incomplete: dict  # ID -> subtypes it lacks (those IDs are not in the table)


def read_labels(path: str | Path) -> LabelTable:
    """Read stage_2_train.csv (``ID,Label``; rows ``ID_<hex>_<subtype>,0|1``) into a :class:`LabelTable`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RSNA label file {path} does not exist")
    values: dict[str, dict[str, int]] = defaultdict(dict)
    duplicates = disagreements = 0
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ID", "Label"]:
            raise ValueError(f"{path} is not in stage_2_train.csv format: its header is {header!r}, not 'ID,Label'")
        for line, row in enumerate(reader, 2):
            if not row or not row[0].strip():
                continue
            image, _, subtype = row[0].strip().rpartition("_")
            if subtype not in CLASSES or not image:
                raise ValueError(f"{path}, line {line}: {row[0]!r} is not ID_<hex>_<subtype> with a subtype of "
                                 f"{', '.join(RSNA_ORDER)}")
            try:
                value = int(row[1])
            except (IndexError, ValueError):
                raise ValueError(f"{path}, line {line}: the label of {row[0]} is not 0 or 1 ({row[1:]!r})") from None
            if value not in (0, 1):
                raise ValueError(f"{path}, line {line}: the label of {row[0]} is {value}, not 0 or 1")
            seen = values[image].get(subtype)
            if seen is not None:
                duplicates += 1
                disagreements += seen != value
                value = max(seen, value)
            values[image][subtype] = value
    table = LabelTable()
    table.duplicates, table.disagreements, table.incomplete = duplicates, disagreements, {}
    for image, by_subtype in values.items():
        missing = [c for c in CLASSES if c not in by_subtype]
        if missing:
            table.incomplete[image] = missing
        else:
            table[image] = tuple(by_subtype[c] for c in CLASSES)
    return table


def _scan_one(path: str) -> tuple[str, ...]:
    """One file's index row (INDEX_FIELDS order, path as given); runs in a worker process, never raises."""
    image_id = Path(path).stem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's complaints about a broken file: the reason says it
            result = scan_file(FileRef(path))
    except Exception as exc:  # noqa: BLE001 - scan_file should not raise; a worker must not die anyway
        return _skip_row(image_id, path, f"unreadable DICOM file ({type(exc).__name__})")
    if isinstance(result, Skipped):
        return _skip_row(image_id, path, result.reason)
    if len(result.slices) != 1:
        return _skip_row(image_id, path, f"a multi-frame file ({len(result.slices)} frames), not an RSNA slice")
    ref = result.slices[0]
    z = float("nan")
    if ref.position is not None and result.orientation is not None and len(result.orientation) == 6:
        z = project_on_normal(ref.position, result.orientation)  # as the viewer orders slices
    elif ref.position is not None:
        z = float(ref.position[2])
    elif ref.instance is not None:
        z = float(ref.instance)
    patient = result.patient.id.strip()
    hu = ref.hu
    return (image_id, path, patient, result.study_uid, repr(z), ref.sop_uid, ref.transfer_syntax, repr(hu.slope),
            repr(hu.intercept), "" if hu.padding_value is None else str(hu.padding_value), str(int(hu.wrap_12bit)), "")


def _skip_row(image_id: str, path: str, reason: str) -> tuple[str, ...]:
    return (image_id, path, *([""] * (len(INDEX_FIELDS) - 3)), reason or "unusable")


class RsnaSource:
    """RSNA 2019 slices from the DICOM headers, with labels from a stage_2_train.csv-format file.

    ``root``: folder searched recursively for ``*.dcm``. ``labels_csv``: the label file, or None for
    unlabelled data (every record has ``labels=None``). ``workers``: header-scanning processes
    (default: all CPUs; 1 scans in this process), ``chunksize``: files per task sent to a worker.
    ``index_cache``: a CSV path; written after the first scan and read instead of scanning later.
    ``progress``: show a tqdm bar while scanning (``disable=not progress``). ``name``: the records'
    ``source`` (default "rsna").

    After :meth:`records`: :attr:`skipped` lists ``(path, reason)`` for unreadable files and for
    images without label rows; :attr:`label_duplicates` / :attr:`label_disagreements` report the
    label file's repeated rows; :attr:`labels_without_image` counts label IDs with no file.
    """

    name = "rsna"
    hu_range = None
    classes = CLASSES  # labels all six

    def __init__(self, root: str | Path, labels_csv: str | Path | None = None, *, workers: int | None = None,
                 chunksize: int = 512, index_cache: str | Path | None = None, progress: bool = True,
                 name: str | None = None):
        self.name = name or type(self).name  # SliceRecord.source; a config may rename a source (train_only)
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"RSNA image folder {self.root} does not exist")
        self.labels_csv = Path(labels_csv).expanduser() if labels_csv is not None else None
        if self.labels_csv is not None and not self.labels_csv.is_file():
            raise FileNotFoundError(f"RSNA label file {self.labels_csv} does not exist")
        self.workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
        self.chunksize = max(1, int(chunksize))
        self.index_cache = Path(index_cache).expanduser() if index_cache is not None else None
        self.progress = progress
        self.skipped: list[tuple[str, str]] = []
        self.label_duplicates = self.label_disagreements = self.labels_without_image = 0
        self._records: list[SliceRecord] | None = None

    # ------------------------------------------------------------------ header index

    def _scan(self) -> list[tuple[str, ...]]:
        paths = sorted(str(p) for p in self.root.rglob("*.dcm") if p.is_file())
        if not paths:
            raise FileNotFoundError(f"no *.dcm files under {self.root}")
        bar = tqdm(total=len(paths), desc="scan RSNA headers", unit="file", disable=not self.progress)
        rows: list[tuple[str, ...]] = []
        if self.workers == 1:
            for path in paths:
                rows.append(_scan_one(path))
                bar.update()
        else:
            chunksize = min(self.chunksize, max(1, math.ceil(len(paths) / self.workers)))
            with ProcessPoolExecutor(self.workers) as pool:
                for row in pool.map(_scan_one, paths, chunksize=chunksize):
                    rows.append(row)
                    bar.update()
        bar.close()
        # The cache stores paths relative to root, so a moved data folder keeps its cache.
        return [(r[0], os.path.relpath(r[1], self.root), *r[2:]) for r in rows]

    def _index(self) -> list[tuple[str, ...]]:
        if self.index_cache is not None and self.index_cache.is_file():
            with open(self.index_cache, newline="") as f:
                reader = csv.reader(f)
                header = tuple(next(reader, ()))
                if header == INDEX_FIELDS:
                    return [tuple(row) for row in reader if row]
            # Another format (an older version, or some other CSV): scan again and replace it.
        rows = self._scan()
        if self.index_cache is not None:
            self.index_cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.index_cache.with_name(self.index_cache.name + ".tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(INDEX_FIELDS)
                writer.writerows(rows)
            os.replace(tmp, self.index_cache)  # a half-written cache is never read as complete
        return rows

    # ------------------------------------------------------------------ records

    def records(self) -> list[SliceRecord]:
        if self._records is not None:
            return list(self._records)
        self.skipped = []
        labels = read_labels(self.labels_csv) if self.labels_csv is not None else None
        if labels is not None:
            self.label_duplicates, self.label_disagreements = labels.duplicates, labels.disagreements
        by_study: dict[str, list[dict]] = defaultdict(list)
        found_ids: set[str] = set()
        for values in self._index():
            row = dict(zip(INDEX_FIELDS, values))
            path = str(self.root / row["path"])
            if row["reason"]:
                self.skipped.append((path, row["reason"]))
                continue
            found_ids.add(row["id"])
            label = None
            if labels is not None:
                label = labels.get(row["id"])
                if label is None:
                    missing = labels.incomplete.get(row["id"])
                    self.skipped.append((path, f"label rows incomplete (no {', '.join(missing)})" if missing
                                         else "no label rows in the label file"))
                    continue
            row["path"], row["labels"] = path, label
            by_study[row["study"]].append(row)
        if labels is not None:
            self.labels_without_image = len(set(labels) - found_ids)
        out = []
        for study, members in by_study.items():
            members.sort(key=lambda r: (math.isnan(float(r["z"])), float(r["z"]), r["id"]))
            for index, row in enumerate(members):
                extra = {k: row[k] for k in ("path", "sop_uid", "transfer_syntax", "slope", "intercept", "padding",
                                            "wrap", "z")}
                out.append(SliceRecord(key=f"rsna/{row['id']}", patient=row["patient"] or f"unknown/{study}",
                                       study=study, index=index, labels=row["labels"], source=self.name, extra=extra))
        keys = [r.key for r in out]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.root} holds two files with the same RSNA ID; give one image folder per ID")
        self._records = out
        return list(out)

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        """float32 HU [H, W] (display orientation as stored), decoded by the core."""
        row = record.extra
        transform = HuTransform(float(row["slope"]), float(row["intercept"]),
                                int(row["padding"]) if row["padding"] not in ("", None) else None,
                                bool(int(row["wrap"])))
        ref = SliceRef(file=FileRef(row["path"]), frame=None, sop_uid=row["sop_uid"], instance=None, position=None,
                       hu=transform, transfer_syntax=row["transfer_syntax"])
        return decode_slice(ref)
