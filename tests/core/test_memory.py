"""glibc's mmap threshold is fixed where glibc is the allocator (the soak bench measures what it buys)."""

from __future__ import annotations

import platform
import sys

import pytest

from ich_viewer.core.memory import limit_heap_retention


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_the_threshold_is_set_on_glibc():
    assert limit_heap_retention() is True
