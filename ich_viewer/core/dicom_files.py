"""Finding the files a user opened: folders (recursively, in natural order), zip members and the files a
DICOMDIR lists, or the one-line reason each thing was passed over (an unreadable folder, a pipe, a refused
archive member). Nothing here reads a header: :mod:`~ich_viewer.core.dicom_io` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import pydicom
from pydicom.fileset import FileSet

from ich_viewer.core import archives
from ich_viewer.core.errors import one_line
from ich_viewer.core.geometry import natural_key
from ich_viewer.core.series import FileRef, Skipped


def iter_candidates(paths: Iterable[str | os.PathLike]) -> Iterator[FileRef | Skipped]:
    """Every file under ``paths`` (folders recursively, zip members, files a DICOMDIR lists), or why
    one was passed over: unreadable folders, pipes and devices, refused archives and members."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for folder, files in _walk(path):
                if isinstance(folder, Skipped):
                    yield folder
                    continue
                for name in files:
                    if name.upper() == "DICOMDIR":
                        continue  # an index of files that this walk finds anyway
                    yield from _expand_file(folder / name)
        elif path.exists():
            yield from _expand_file(path, explicit=True)
        else:
            yield Skipped(str(path), "does not exist")


def _walk(top: Path) -> Iterator[tuple[Path, list[str]] | tuple[Skipped, list]]:
    """Each folder under ``top`` (itself first, then its subfolders in natural order, depth first, hidden ones
    and links to folders left out, as ``os.walk`` does) with its other entries' names in natural order; or
    why a folder could not be listed. A loop, not recursion: Python 3.11's ``os.walk`` recurses, and a tree
    1,000 folders deep stopped the whole open with a RecursionError."""
    todo = [top]
    while todo:
        folder = todo.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
            folders, files = [], []
            for entry in listed:
                is_folder = entry.is_dir()
                if is_folder and not entry.is_symlink() and not entry.name.startswith("."):
                    folders.append(entry.name)
                elif not is_folder:
                    files.append(entry.name)
        except OSError as exc:
            yield Skipped(str(folder), f"folder could not be read ({exc.strerror or exc})"), []
            continue
        yield folder, sorted(files, key=natural_key)
        todo += [folder / name for name in sorted(folders, key=natural_key, reverse=True)]


def _expand_file(path: Path, explicit: bool = False) -> Iterator[FileRef | Skipped]:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        yield Skipped(str(path), f"could not be read ({exc.strerror or type(exc).__name__})")
        return
    if not stat.S_ISREG(mode):  # a pipe or device would block or never end
        yield Skipped(str(path), "not a regular file (a pipe, socket or device)")
    elif path.suffix.lower() == ".zip":
        try:
            members, refused = archives.list_members(str(path))
        except archives.ArchiveError as exc:
            yield Skipped(str(path), str(exc))
            return
        for member, reason in refused:
            yield Skipped(str(FileRef(str(path), member)), reason)
        for member in sorted(members, key=natural_key):
            if Path(member).suffix.lower() == ".zip":  # not opened: archives in archives multiply a bomb's reach
                yield Skipped(str(FileRef(str(path), member)), "a zip archive inside a zip archive: unzip the outer one")
            elif Path(member).name.upper() != "DICOMDIR" and not Path(member).name.startswith("."):
                yield FileRef(str(path), member)
    elif explicit and path.name.upper() == "DICOMDIR":
        yield from _dicomdir_files(path)
    else:
        yield FileRef(str(path))


MISSING_RECORD = "does not exist: "  # how pydicom's FileSet words a record whose file is missing
MISSING_FILE = "listed in the DICOMDIR but missing"


def _dicomdir_files(path: Path) -> Iterator[FileRef | Skipped]:
    try:
        with _pydicom_warnings_caught() as caught:
            index = pydicom.dcmread(path)
            problem = _record_links_problem(index)  # pydicom's FileSet would follow a loop for ever
            if problem:
                yield Skipped(str(path), f"unreadable DICOMDIR ({problem})")
                return
            fileset = FileSet(index)
        instances = list(fileset)
    except Exception as exc:  # noqa: BLE001 - any parse failure is "unreadable", reported
        yield Skipped(str(path), f"unreadable DICOMDIR ({one_line(exc)})")
        return
    # FileSet drops a record whose file is missing with a warning (full path, on stderr); it is a skipped
    # file like any other, listed with the rest and anonymised with them.
    for message in caught:
        if MISSING_RECORD in message:
            yield Skipped(message.rsplit(MISSING_RECORD, 1)[1], MISSING_FILE)
    for instance in instances:
        try:
            ref = Path(instance.path)
        except Exception as exc:  # noqa: BLE001 - a record pointing nowhere sensible
            yield Skipped(str(path), f"a DICOMDIR record with an unusable file reference ({one_line(exc)})")
            continue
        if ref.is_file():
            yield from _expand_file(ref)
        else:
            yield Skipped(str(ref), MISSING_FILE)


def _record_links_problem(index) -> str | None:
    """What is wrong with a DICOMDIR's record links, followed from its first record through each record's "next"
    and "lower level" offsets: one that comes back to a record already reached (each record is one node of a
    tree), or one that points to no record (FileSet raised a bare KeyError); None when they are sound."""
    records = {item.seq_item_tell: item for item in index.get("DirectoryRecordSequence", [])}
    reached, todo = set(), [index.get("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity")]
    while todo:
        offset = todo.pop()
        if not offset:
            continue  # 0 or absent: the end of a chain
        if offset not in records:
            return "one of its records points to a place in the file where no record is"
        if offset in reached:
            return "its records link back to each other in a loop"
        reached.add(offset)
        record = records[offset]
        todo += [record.get("OffsetOfTheNextDirectoryRecord"), record.get("OffsetOfReferencedLowerLevelDirectoryEntity")]
    return None


@contextlib.contextmanager
def _pydicom_warnings_caught() -> Iterator[list[str]]:
    """The texts of the warnings pydicom raises (and logs) inside the block, collected instead of printed.
    ``warnings.catch_warnings`` is process-wide: another thread's warning in that moment is collected too."""
    texts: list[str] = []
    logger = logging.getLogger("pydicom")
    was_disabled, logger.disabled = logger.disabled, True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield texts
            finally:
                texts.extend(str(w.message) for w in caught)
    finally:
        logger.disabled = was_disabled
