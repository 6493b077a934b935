"""One batched model call run as sub-batches on worker threads, each on one torch thread.

On CPU, torch's intra-op threads (libgomp) pay off only while every call comes from the
same thread: once a second thread has run torch, libgomp stops spinning between parallel
regions and every region waits on a futex. A Ray actor's calls come from whichever pool
thread is free (``asyncio.to_thread``), so there a diarization on two intra-op threads ran
no faster than on one. Threads that each compute a share of the batch on one torch thread
form no OpenMP teams at all, and keep every core busy whichever thread calls.
``load/bench_diarizer_threads.py`` measures both layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


class SubBatches:
    """Splits a batch into ``workers`` contiguous parts and joins the rows in order."""

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="sub-batch") if workers > 1 else None
        )

    def run(self, call: Callable[[Any], Any], batch: Any) -> Any:
        """``call(batch)``: rows, or a tuple of rows (a multi-task model's outputs).
        ``batch`` is anything sliceable (a list, a tensor)."""
        if self._pool is None or len(batch) < 2:
            return call(batch)
        size = -(-len(batch) // self.workers)
        parts = [batch[first : first + size] for first in range(0, len(batch), size)]
        results = list(self._pool.map(call, parts))
        if isinstance(results[0], tuple):
            return tuple(np.concatenate(rows) for rows in zip(*results, strict=True))
        return np.concatenate(results)
