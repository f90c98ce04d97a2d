"""Zip archives as sources of DICOM files, bounded: member count, sizes, compression ratio, safe names.

A zip is never extracted to disk or held whole in memory: members are listed once and streamed. Each
archive is opened once and kept (a few at a time) so that reading member k does not parse the
central directory again: re-opening per member made a 5,000-member zip take 105 s to scan.
"""

from __future__ import annotations

import io
import os
import posixpath
import threading
import zipfile
from collections import OrderedDict
from pathlib import PurePosixPath
from typing import BinaryIO

#: More members than a head-CT study has (thin-slice studies reach a few thousand files).
MAX_MEMBERS = 20_000
#: The largest member read (an enhanced multi-frame CT of 1,000 512x512 frames is 525 MB).
MAX_MEMBER_BYTES = 600 * 2**20
#: Deflate reaches ~3:1 on CT; far beyond it is a zip bomb, not a DICOM file.
MAX_RATIO = 100
#: Members this small are not worth a ratio check (headers-only files compress well).
RATIO_FLOOR_BYTES = 2**20
#: Everything the archive would unpack to: larger archives are refused whole.
MAX_TOTAL_BYTES = 16 * 2**30
#: Archives kept open at once.
OPEN_ARCHIVES = 4


class ArchiveError(Exception):
    """The archive or member is refused; the message says why in a sentence without file names."""


def list_members(path: str) -> tuple[list[str], list[tuple[str, str]]]:
    """``(members to read, [(member, reason it is refused), ...])``; raises :class:`ArchiveError` for
    an archive refused whole (unreadable, too many members, too large when unpacked)."""
    try:
        infos = _archive(path).infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"not a readable zip archive ({type(exc).__name__})") from exc
    files = [i for i in infos if not i.is_dir()]
    if len(files) > MAX_MEMBERS:
        raise ArchiveError(f"a zip archive of {len(files):,} files (more than {MAX_MEMBERS:,}); unpack it and "
                           "open the folder")
    total = sum(i.file_size for i in files)
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"a zip archive that unpacks to {total / 2**30:.0f} GB (more than "
                           f"{MAX_TOTAL_BYTES // 2**30} GB); unpack it and open the folder")
    accepted, refused = [], []
    last_of = {info.filename: info for info in files}  # the member a name opens: zipfile keeps the last
    for info in files:
        if last_of[info.filename] is not info:
            refused.append((info.filename, "a zip member with the same name as a later one, which is the one "
                                           "read (unpack the archive to read both)"))
            continue
        problem = member_problem(info)
        if problem:
            refused.append((info.filename, problem))
        else:
            accepted.append(info.filename)
    return accepted, refused


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why one member is not read, or None."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    inside = posixpath.normpath(name)  # "d/../s.dcm" stays inside; "../s.dcm" and "d/../../s.dcm" do not
    if name.startswith("/") or inside == ".." or inside.startswith("../") or (parts and ":" in parts[0]):
        return "a zip member whose path leaves the archive (refused)"
    if info.flag_bits & 0x1:
        return "an encrypted zip member"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"a zip member of {info.file_size / 2**20:.0f} MB (more than {MAX_MEMBER_BYTES // 2**20} MB)"
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return (f"a zip member compressed {info.file_size // max(info.compress_size, 1):,}:1 (a zip bomb, not an "
                "image)")
    return None


def open_member(path: str, member: str) -> BinaryIO:
    """One member as a stream: decompressed as it is read, never held whole in memory (seeking back
    decompresses again from the start). zipfile stops at the size the directory declares and checks the
    CRC, so a member cannot unpack to more than the limits allowed. :class:`ArchiveError` when refused."""
    try:
        archive = _archive(path)
        info = archive.getinfo(member)
        problem = member_problem(info)
        if problem:
            raise ArchiveError(problem)
        return _GuardedStream(archive.open(info))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(f"an unreadable zip member ({type(exc).__name__})") from exc


class _GuardedStream(io.RawIOBase):
    """A member stream whose read errors (a bad CRC, a truncated archive) are :class:`ArchiveError`."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._guard(self._stream.read, size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._guard(self._stream.seek, offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        self._stream.close()
        super().close()

    @staticmethod
    def _guard(method, *args):
        try:
            return method(*args)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            raise ArchiveError(f"an unreadable zip member ({type(exc).__name__}: {exc})"[:200]) from exc


_lock = threading.Lock()
_open: OrderedDict[tuple, zipfile.ZipFile] = OrderedDict()


def _archive(path: str) -> zipfile.ZipFile:
    """The archive, opened once per (path, size, mtime) and shared: zipfile reads members from
    several threads safely (each read seeks its own position under the archive's lock)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        archive = _open.get(key)
        if archive is not None:
            _open.move_to_end(key)
            return archive
    archive = zipfile.ZipFile(path)
    with _lock:
        _open[key] = archive
        while len(_open) > OPEN_ARCHIVES:
            _open.popitem(last=False)[1].close()
    return archive
