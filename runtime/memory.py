"""Fault large buffers in ahead of their first use, while the engine is idle.

numpy backs large arrays with transparent huge pages, and with the kernel's default defrag policy the first write to
each 2 MB page compacts memory in the thread that writes: about 0.5 s for one KV slot of SmolLM2 at 4096 positions,
paid by the first requests that reach a slot. MADV_POPULATE_WRITE (Linux 5.14+) faults the pages in without writing
to them, so the buffers may already hold data.
"""
import ctypes
import logging
import mmap
import os
import sys
import time

import numpy as np

logger = logging.getLogger("mistralrs.runtime")

MADV_POPULATE_WRITE = 23  # linux/mman.h
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def populate(buffer: np.ndarray) -> bool:
    """Fault in the whole pages of a contiguous buffer, leaving its contents as they are; False where the platform
    cannot (the pages are then faulted in by their first use, as without this)."""
    if _libc is None:
        return False
    start = -(-buffer.ctypes.data // mmap.PAGESIZE) * mmap.PAGESIZE  # madvise takes a page-aligned start
    end = buffer.ctypes.data + buffer.nbytes
    if end <= start:
        return True
    result = _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), ctypes.c_int(MADV_POPULATE_WRITE))
    return result == 0


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo; None where there is none."""
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


class Populator:
    """Populates `buffers` in order, one per `step()`, so a caller can interleave it with its own work. Buffers larger
    together than half the memory available now are left to fault in on use: a reservation sized for the worst case
    must not commit memory the host may need (what the buffers later touch is committed either way). For the same
    reason it stops where populating the next buffer would leave less than that half available (other processes
    populate or allocate too)."""

    def __init__(self, buffers: list[np.ndarray], what: str):
        total, available = sum(b.nbytes for b in buffers), available_bytes()
        self._pending = list(reversed(buffers))
        self._what, self._seconds, self._bytes = what, 0.0, 0
        self._floor = None if available is None else available // 2
        if available is not None and total > available // 2:
            logger.info("%s: %.0f MB, more than half of the %.0f MB available: faulted in on use", what, total / 1e6,
                        available / 1e6)
            self._pending.clear()

    def step(self) -> bool:
        """Populate the next buffer; False once there is nothing left to do."""
        if not self._pending:
            return False
        buffer = self._pending.pop()
        available = available_bytes() if self._floor is not None else None
        if available is not None and available - buffer.nbytes < self._floor:
            logger.info("%s: stopped after %.0f MB, %.0f MB available is less than half of what there was at start",
                        self._what, self._bytes / 1e6, available / 1e6)
            self._pending.clear()
            return False
        start = time.perf_counter()
        if not populate(buffer):
            reason = os.strerror(ctypes.get_errno()) if _libc is not None else f"not supported on {sys.platform}"
            logger.info("%s: not populated ahead of use (%s)", self._what, reason)
            self._pending.clear()
            return False
        self._seconds += time.perf_counter() - start
        self._bytes += buffer.nbytes
        if not self._pending:
            logger.info("%s: %.0f MB populated in %.1f s of idle time", self._what, self._bytes / 1e6, self._seconds)
        return True

    @property
    def done(self) -> bool:
        return not self._pending
