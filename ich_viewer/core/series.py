"""Frozen descriptions of what was found on disk: patients' studies, series, slices and geometry.

Headers only: pixels are decoded by :mod:`ich_viewer.core.volume` (``VolumeLoader(series)``,
``read_volume(series)``), which knows these descriptions; these know nothing of decoding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ich_viewer.core.windows import Window

#: What replaces padding and out-of-field pixels: the bottom of the usual CT range (air).
AIR_HU = -1024.0


@dataclass(frozen=True, order=True)
class FileRef:
    """A file on disk, or a member of a zip archive (``member`` set)."""

    path: str
    member: str | None = None

    def open(self) -> BinaryIO:
        """Open for reading; a zip member is streamed, within :mod:`~ich_viewer.core.archives`' limits."""
        if self.member is None:
            return open(self.path, "rb")
        from ich_viewer.core.archives import open_member

        return open_member(self.path, self.member)

    @property
    def name(self) -> str:
        return Path(self.member if self.member is not None else self.path).name

    def __str__(self) -> str:
        return self.path if self.member is None else f"{self.path}/{self.member}"


@dataclass(frozen=True)
class HuTransform:
    """How stored pixel values become Hounsfield units for one file."""

    slope: float = 1.0
    intercept: float = 0.0
    padding_value: int | None = None
    #: The RSNA 2019 defect: 12-bit data labelled unsigned whose values wrapped (see dicom_io).
    wrap_12bit: bool = False
    #: The HU that the stored bits can give (after the air floor): int16 storage only when it fits.
    hu_range: tuple[float, float] = (AIR_HU, 32767.0)


@dataclass(frozen=True)
class SliceRef:
    """One axial image: a single-frame file, or one frame of a multi-frame file."""

    file: FileRef
    frame: int | None
    sop_uid: str
    instance: int | None
    position: tuple[float, float, float] | None
    hu: HuTransform
    transfer_syntax: str


@dataclass(frozen=True)
class Skipped:
    """A file that was not used, with a one-line reason a person understands.

    The reason never names the file (file names often carry the patient's name): ``path`` does, and
    ``number`` (1-based, in the order files were found) lets an anonymised report say "file 17 of 238".
    """

    path: str
    reason: str
    number: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def anonymous(self, total: int) -> str:
        """The reason with the file's number instead of its name."""
        return f"file {self.number} of {total}: {self.reason}" if self.number else self.reason


@dataclass(frozen=True)
class Geometry:
    """How the slices were ordered, and anything odd about their spacing.

    ``ordering`` is ``"position"`` (ImagePositionPatient on the slice normal), ``"instance"``
    (InstanceNumber) or ``"filename"``. Oddities are reported, never silently fixed.
    """

    ordering: str
    slice_spacing: float | None
    duplicates: tuple[tuple[int, int], ...] = ()  # index pairs at the same position
    gaps: tuple[int, ...] = ()  # index i: the step from slice i to i+1 is a gap
    irregular: bool = False

    @property
    def warnings(self) -> tuple[str, ...]:
        out = []
        if self.ordering != "position":
            out.append(
                f"slices ordered by {'instance number' if self.ordering == 'instance' else 'file name'}"
                " (no usable ImagePositionPatient)"
            )
        if self.duplicates:
            out.append(f"{len(self.duplicates)} slice(s) share a position with another slice")
        if self.gaps:
            out.append(f"{len(self.gaps)} gap(s) in slice positions (after slice {', '.join(str(g + 1) for g in self.gaps)})")
        if self.irregular:
            out.append("irregular slice spacing")
        return tuple(out)


@dataclass(frozen=True)
class Acquisition:
    """How the series was made, as far as the header says (what the intended-use check reads)."""

    contrast_agent: str = ""
    contrast_route: str = ""
    body_part: str = ""
    kernel: str = ""
    protocol: str = ""


@dataclass(frozen=True, eq=False)
class Series:
    """A series of axial CT slices in slice order (inferior to superior along the slice normal)."""

    uid: str
    description: str
    number: int | None
    slices: tuple[SliceRef, ...]
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing), mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6 values)
    geometry: Geometry
    file_window: Window | None = None
    acquisition: Acquisition = Acquisition()
    #: False when the files state no usable PixelSpacing: ``pixel_spacing`` is then 1 mm by assumption,
    #: so no scale bar and no distance is shown as if it were measured
    pixel_spacing_known: bool = True
    #: MONOCHROME1: after the window, the lowest value is shown white (DICOM's rule); HU and the model's input are
    #: the same as for MONOCHROME2, only the grey on screen and in exports is inverted
    monochrome1: bool = False

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def files(self) -> list[str]:
        """File paths in slice order (a multi-frame file appears once per frame)."""
        return [str(s.file) for s in self.slices]

    @functools.cached_property  # computed once (cached_property writes past the frozen dataclass)
    def z(self) -> np.ndarray:
        """Slice positions along the slice normal in mm; index positions if the file has none (see
        :attr:`positions_known`)."""
        return _positions_on_normal(self)

    @property
    def positions_known(self) -> bool:
        """Whether :attr:`z` comes from the files' positions, not from the slices' order: only then is it shown
        or written as a position."""
        return self.orientation is not None and all(s.position is not None for s in self.slices)

    @property
    def pixel_aspect(self) -> float:
        """A pixel's width over its height in mm (PixelSpacing is the row spacing, then the column spacing): how
        much wider than tall it is drawn. 1 where the files state no spacing."""
        rows_mm, columns_mm = self.pixel_spacing
        return columns_mm / rows_mm if self.pixel_spacing_known and rows_mm > 0 and columns_mm > 0 else 1.0

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, column) spacing in mm; the slice spacing is the median step, 0 if unknown."""
        return (self.geometry.slice_spacing or 0.0, *self.pixel_spacing)


def _positions_on_normal(series: Series) -> np.ndarray:
    if series.orientation is None or any(s.position is None for s in series.slices):
        return np.arange(len(series.slices), dtype=np.float64) * (series.geometry.slice_spacing or 1.0)
    return np.array([project_on_normal(s.position, series.orientation) for s in series.slices])


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """The unit normal of an ImageOrientationPatient (row direction x column direction), turned so that its
    strongest component is positive: towards the head for axial slices. Rows mirrored (IOP -1,0,0 / 0,1,0) or
    columns flipped give a normal towards the feet, which ordered such a series vertex first with z negated."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal) or 1.0
    return -normal if normal[np.argmax(np.abs(normal))] < 0 else normal


def project_on_normal(position: tuple[float, float, float], orientation: tuple[float, ...]) -> float:
    return float(np.dot(np.asarray(position, float), slice_normal(orientation)))


@dataclass(frozen=True)
class Patient:
    """Identifiers for the overlay; the anonymised display hides them, logs never contain them."""

    name: str
    id: str
    birth_date: str = ""
    sex: str = ""


@dataclass(frozen=True, eq=False)
class Study:
    uid: str
    date: str
    description: str
    patient: Patient
    series: tuple[Series, ...]


@dataclass(frozen=True)
class LoadResult:
    studies: tuple[Study, ...]
    skipped: tuple[Skipped, ...]
    #: How many files were looked at (``Skipped.number`` counts up to it).
    files_found: int = 0
    #: CSV and TXT files that are not DICOM (a study's labels.csv, CQ500's manifest.csv, notes): expected beside
    #: a study, so counted apart from ``skipped``, which holds the files that should have been images.
    other_files: tuple[str, ...] = ()

    @property
    def other_files_note(self) -> str:
        """"2 other files (CSV/TXT) not read", or "" when there are none."""
        n = len(self.other_files)
        return f"{n} other file{'' if n == 1 else 's'} (CSV/TXT) not read" if n else ""

    @property
    def series(self) -> list[Series]:
        """Every series of every study, in study order."""
        return [s for study in self.studies for s in study.series]
