"""Give freed heap memory back to the operating system, so a replica's memory follows its load.

glibc's malloc keeps memory freed by one thread in that thread's arena for reuse and
returns it to the system only from the top of the main heap. A replica decodes requests
on worker threads (``asyncio.to_thread``, CTranslate2's and torch's pools), so after a
burst of large requests its resident memory stays at the burst's peak: a node packing
several replicas runs out of memory though none of them holds anything. ``malloc_trim``
walks every arena and releases their free pages; a daemon thread calls it every few
seconds. Elsewhere than glibc (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
import time

logger = logging.getLogger(__name__)

_started = False
_lock = threading.Lock()


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return free heap pages to the system now; False where malloc has no trim."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def start_heap_trimmer(interval_s: float = 10.0) -> bool:
    """Trim the heap every ``interval_s`` in a daemon thread, once per process."""
    global _started
    trim = _malloc_trim()
    if trim is None or interval_s <= 0:
        return False
    with _lock:
        if _started:
            return True
        _started = True

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            trim(0)

    threading.Thread(target=loop, name="heap-trimmer", daemon=True).start()
    logger.debug("heap trimmer started, every %.0f s", interval_s)
    return True
