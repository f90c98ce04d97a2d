"""The one results format: a CSV row per slice and a JSON summary per study.

``ich-viewer triage`` and the viewer's File > Export results write exactly this. With
``anonymise`` the patient name/ID, the study date and file paths are left out (file names can carry
patient names). A slice that could not be decoded has no probabilities, no flags and its reason.

Slices are numbered from 1 in everything written here (the CSV's ``slice_index``, the JSON's ``top_slice``,
``flagged_ranges`` and unreadable ``slice``), as the window counts them ("slice 3 of 32").
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ich_viewer.core.inference import SeriesPrediction, summarize
from ich_viewer.core.intended_use import UseCheck
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.errors import escaped_controls
from ich_viewer.core.series import LoadResult, Series, Study

CSV_FIELDS = ["path", "patient", "study_uid", "series_uid", "sop_instance_uid", "slice_index", "z",
              *[f"p_{c}" for c in CLASSES], *[f"flag_{c}" for c in CLASSES], "slice_error", "intended_use"]


@dataclass
class SeriesResult:
    study: Study
    series: Series
    prediction: SeriesPrediction
    use_check: UseCheck = UseCheck()
    #: False for a series outside the intended use (unless asked): its probabilities are kept, nothing is flagged.
    flags_shown: bool = True


def _uids(results: list[SeriesResult], anonymise: bool):
    """The study and series UIDs to write: the real ones, or anonymised "study 1" and "series 1.2" (a UID can
    embed the scan's date and time, and it links the export back to the patient's record)."""
    if not anonymise:
        return (lambda r: r.study.uid), (lambda r: r.series.uid)
    studies: dict[str, int] = {}
    series: dict[tuple[str, str], str] = {}
    for r in results:
        number = studies.setdefault(r.study.uid, len(studies) + 1)
        in_study = sum(1 for key in series if key[0] == r.study.uid)
        series.setdefault((r.study.uid, r.series.uid), f"series {number}.{in_study + 1}")
    return (lambda r: f"study {studies[r.study.uid]}"), (lambda r: series[(r.study.uid, r.series.uid)])


def slice_rows(results: list[SeriesResult], thresholds: np.ndarray, anonymise: bool = False) -> list[dict]:
    rows = []
    study_uid, series_uid = _uids(results, anonymise)
    for r in results:
        probabilities = r.prediction.probabilities
        flags = (np.nan_to_num(probabilities, nan=-1.0) >= thresholds) & r.flags_shown
        z = r.series.z if r.series.positions_known else None  # made-up positions are not written as measured
        for i, ref in enumerate(r.series.slices):
            row = {"path": "" if anonymise else printable(str(ref.file)), "patient": "" if anonymise else r.study.patient.id,
                   "study_uid": study_uid(r), "series_uid": series_uid(r), "sop_instance_uid": "" if anonymise else ref.sop_uid,
                   "slice_index": i + 1, "z": "" if z is None else f"{z[i]:.3f}"}
            for c, name in enumerate(CLASSES):
                value = probabilities[i, c]
                row[f"p_{name}"] = "" if np.isnan(value) else f"{value:.6f}"
                row[f"flag_{name}"] = int(flags[i, c])
            row["slice_error"] = r.prediction.failed.get(i, "")
            row["intended_use"] = r.use_check.sentence
            rows.append(row)
    return rows


def write_csv(target, rows: list[dict]) -> None:
    """Write to a path, or to an open text stream (standard output)."""
    if hasattr(target, "write"):
        _write_rows(target, rows)
        return
    with open(target, "w", newline="") as f:
        _write_rows(f, rows)


#: The CSV's fields whose text comes from the files (a patient ID or a path can be anything the file says)
FILE_TEXT_FIELDS = ("path", "patient", "study_uid", "series_uid", "sop_instance_uid")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A cell a spreadsheet will not run: text from a file that starts like a formula ("=HYPERLINK(...)" in a
    patient ID would send the row to a web site when clicked) gets a leading apostrophe, OWASP's advice."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _file_text_cell(value):
    """A cell of text from a file, its control characters written as escapes: an ESC sequence in a file name or
    patient ID would otherwise clear the screen of whoever runs `cat` on the CSV."""
    return spreadsheet_safe(escaped_controls(value) if isinstance(value, str) else value)


def _write_rows(stream, rows: list[dict]) -> None:
    writer = csv.DictWriter(stream, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, **{key: _file_text_cell(row.get(key)) for key in FILE_TEXT_FIELDS}} for row in rows)


def study_summaries(results: list[SeriesResult], thresholds: np.ndarray, anonymise: bool = False) -> list[dict]:
    studies: dict[str, dict] = {}
    study_uid, series_uid = _uids(results, anonymise)
    for r in results:
        entry = studies.setdefault(r.study.uid, {
            "study_uid": study_uid(r), "date": None if anonymise else r.study.date, "description": r.study.description,
            "patient": None if anonymise else {"name": r.study.patient.name, "id": r.study.patient.id},
            "series": []})
        summary = summarize(r.prediction.probabilities, thresholds)
        if not r.flags_shown:
            for per_class in summary.values():
                per_class.update(flagged=False, flagged_slices=0, flagged_ranges=[])
        _number_from_one(summary)
        entry["series"].append({
            "series_uid": series_uid(r), "description": r.series.description, "slices": len(r.series.slices),
            "complete": r.prediction.complete, "flagged_classes": [c for c in CLASSES if summary[c]["flagged"]],
            "unreadable_slices": [{"slice": i + 1, "reason": reason} for i, reason in sorted(r.prediction.failed.items())],
            "intended_use": {**r.use_check.as_dict(), "flags_shown": r.flags_shown},
            # null: fed slice by slice; else the slab thickness and how many of the series' slices make one
            "slabs": r.prediction.slabs.as_dict() if r.prediction.slabs is not None else None,
            "geometry_warnings": list(r.series.geometry.warnings),  # a gap, shared positions: as `info` prints them
            "classes": summary})
    for entry in studies.values():
        entry["flagged_classes"] = sorted({c for s in entry["series"] for c in s["flagged_classes"]},
                                          key=CLASSES.index)
    return list(studies.values())


def _number_from_one(summary: dict) -> None:
    """``summarize`` counts slices from 0 (array indices); a person reads them from 1, as the window shows them."""
    for per_class in summary.values():
        if per_class["top_slice"] is not None:
            per_class["top_slice"] += 1
        per_class["flagged_ranges"] = [(a + 1, b + 1) for a, b in per_class["flagged_ranges"]]


NOTICE = "Teaching and demonstration model; not for diagnosis."


def results_payload(model, thresholds, results: list[SeriesResult], loaded: LoadResult | None = None,
                    anonymise: bool = False) -> dict:
    """The JSON summary, one format for triage and the window's export: the model and its checksum,
    the active preset and thresholds, each study, and the files that were not used."""
    payload = {"model": {"name": model.card.name, "version": model.card.version, "sha256": model.sha256},
               "preset": thresholds.preset, "thresholds": thresholds.values,
               "not_flagged": thresholds.not_flagged(),
               "studies": study_summaries(results, thresholds.as_array(), anonymise)}
    if loaded is not None:
        # "file 17 of 238" says which file without its name (names often carry the patient's name)
        payload["files_found"] = loaded.files_found
        # the window exports the open series: the count says what else was open (it read as if all were here)
        payload["series_found"] = len(loaded.series)
        payload["skipped"] = [{"path": "" if anonymise else printable(s.path), "file_number": s.number, "reason": s.reason}
                              for s in loaded.skipped]
        payload["other_files"] = len(loaded.other_files)  # CSV/TXT beside the studies: counted, not listed
    payload["notice"] = NOTICE
    return payload


def printable(path: str) -> str:
    """A path as text any UTF-8 reader takes: a name that is not valid UTF-8 (a Latin-1 name from an old CD,
    held by Python as surrogate escapes) shows its odd bytes as \\xe9 instead of failing the whole write."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=1))
