"""Keeping glibc from holding on to freed study-sized arrays.

glibc serves allocations above its mmap threshold with mmap (handed back to the system on free), and
below it from its heap (kept). The threshold starts at 128 KB but rises to the size of the largest
block freed, up to 32 MB, so once a study's arrays (batches of 16 slices: 16 MB) have been freed,
later ones stay in the heap: the soak bench grew ~93 MB over its first opens with no leak, exactly as
a bare pyqtgraph window on the same loader did. A fixed 8 MB threshold keeps single slices (1 MB) in
the heap and sends volumes and batches to mmap: 50 opens then grow by nothing
(``bench/bench_soak.py``).
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 8 * 2**20


def limit_heap_retention() -> bool:
    """Fix glibc's mmap threshold at 8 MB; False where this is not glibc (nothing to do there)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
