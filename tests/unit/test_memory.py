"""Freed heap memory goes back to the system: what keeps a replica's RSS near its load."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from speakerscribe.memory import release_free_heap, start_heap_trimmer


def anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_memory_freed_by_a_worker_thread_is_returned():
    """A burst on a worker thread (as ``asyncio.to_thread`` runs decodes) leaves 200 MB
    free but resident in that thread's arena, pinned by a few live blocks; a trim
    returns it."""
    if not release_free_heap():
        pytest.skip("malloc_trim needs glibc")
    kept: list[bytes] = []

    def burst() -> None:
        blocks = [bytes(4096) for _ in range(50_000)]  # 200 MB in 4 KB blocks
        kept.extend(blocks[::1000])  # a few survivors keep the arena's heap from shrinking

    thread = threading.Thread(target=burst)
    thread.start()
    thread.join()
    before = anon_mb()
    assert release_free_heap()
    after = anon_mb()
    print(f"anon {before:.0f} MB -> {after:.0f} MB after the trim")
    assert before - after > 100, (before, after)
    kept.clear()  # alive until here, so the trim had to work around them


def test_the_trimmer_starts_once_per_process_and_zero_turns_it_off():
    assert not start_heap_trimmer(0)
    assert start_heap_trimmer(3600.0)
    assert start_heap_trimmer(3600.0)
    assert sum(t.name == "heap-trimmer" for t in threading.enumerate()) == 1
