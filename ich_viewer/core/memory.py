"""Handing freed memory back to the system between studies.

glibc keeps freed blocks of a few MB (a batch of slices, CAM arrays) in its heap, and after a
study-sized array is freed it raises its mmap threshold, so later large arrays land in the heap too: the
soak bench grew ~100 MB over its first opens with no leak (a bare pyqtgraph window on the same loader
grew 93 MB). ``malloc_trim`` returns free heap pages in all arenas; once an open, it costs milliseconds.
"""

from __future__ import annotations

import ctypes
import sys


def release_free_memory() -> bool:
    """Return free heap pages to the system (glibc only); False where there is nothing to call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
