"""Populating a buffer ahead of use: its pages become resident, its contents stay as they were."""
import mmap
import sys

import numpy as np
import pytest

from mistralrs.runtime import memory
from mistralrs.runtime.memory import Populator, populate

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="MADV_POPULATE_WRITE is Linux's")
SIZE = 64 << 20


def fresh_buffer(rows: int = 1) -> np.ndarray:
    """Anonymous memory no one has touched (an allocator may hand np.zeros pages that are already resident)."""
    return np.frombuffer(mmap.mmap(-1, SIZE), np.float32).reshape(rows, -1)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_populate_makes_the_pages_resident_and_keeps_the_contents():
    buffer = fresh_buffer()[0]
    buffer[:1000] = np.arange(1000)  # the first pages written before, as a running engine would
    before = resident_bytes()
    assert populate(buffer)
    assert resident_bytes() - before > 0.9 * SIZE
    assert np.array_equal(buffer[:1000], np.arange(1000)) and not buffer[1000:].any()


def test_populator_takes_one_buffer_a_step():
    buffer = fresh_buffer(4)
    populator = Populator([buffer[i] for i in range(4)], "test buffer")
    before = resident_bytes()
    assert populator.step() and not populator.done
    assert 0.2 * SIZE < resident_bytes() - before < 0.3 * SIZE
    while populator.step():
        pass
    assert populator.done and resident_bytes() - before > 0.9 * SIZE


def test_a_cache_larger_than_half_the_available_memory_is_left_to_fault_in_on_use(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: SIZE)
    buffer = fresh_buffer(4)
    populator = Populator([buffer[i] for i in range(4)], "test buffer")
    assert populator.done and not populator.step()


def test_population_stops_where_the_available_memory_falls_below_half_of_what_it_was(monkeypatch):
    available = iter([8 * SIZE, 8 * SIZE, 4 * SIZE])  # at start, before step 1, before step 2 (others allocated)
    monkeypatch.setattr(memory, "available_bytes", lambda: next(available))
    buffer = fresh_buffer(4)
    populator = Populator([buffer[i] for i in range(4)], "test buffer")
    assert populator.step() and not populator.step()
    assert populator.done
