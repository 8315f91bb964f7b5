"""Keep a server's (and a run's pod's) start-up objects out of the garbage collector's full collections.

A server imports tens of thousands of long-lived objects (modules, classes, the clients' protobuf
and pydantic machinery) before it serves anything. CPython's full (generation 2) collection walks
every tracked object, so each one pauses a server's event loop for tens of milliseconds under load,
and the requests caught behind it make the read latency's tail (`bench/api_latency.py`).
`gc.freeze()` moves the objects alive at that moment to a permanent generation the collector skips;
what a server allocates later (requests, caches) is collected as before. Frozen objects are still
freed when their last reference goes, but a cycle among them never is: so it happens once per process
(a test process that starts many apps freezes the first one's only), after the start-up garbage has
been collected (a run's pod skips that collection: its start is on a person's path).
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Callable
from typing import Final

_frozen = False
# How often a long-running process gives its free C heap back (`keep_released`).
RELEASE_SECONDS: Final = 5.0


def freeze_startup_heap(*, collect: bool = True) -> int:
    """Collect the start-up garbage, then freeze what is left (the first call in a process only);
    returns how many objects are frozen. `collect=False`: freeze without collecting first, for a
    process whose start is on a person's path (a run's pod: the full collection would cost its start
    tens of milliseconds, to free what import-time cycles left)."""
    global _frozen
    if not _frozen:
        _frozen = True
        if collect:
            gc.collect()
        gc.freeze()
    return gc.get_freeze_count()


@functools.cache  # looked up once per process, not at every release
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    import ctypes  # here: a run's pod freezes its heap but never trims it, and need not import it

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the kernel; False where the C library cannot.

    Why: what Python allocates above 512 bytes (response bodies, JSON documents, TLS buffers) comes
    from the C allocator, which returns a freed block to the kernel only when it lies at the top of
    its heap. After a burst the heap is mostly free but still resident (glibc's `mallinfo2` shows how
    much), which `malloc_trim` gives back at once. It walks the free blocks (milliseconds to tens of
    milliseconds for a heap of a hundred MiB); ctypes releases the GIL meanwhile.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


async def keep_released(interval: float = RELEASE_SECONDS) -> None:
    """Release the free C heap every `interval` seconds, in a worker thread so the event loop does not
    wait for the walk (the peak of a burst is what a memory limit meets, not its aftermath)."""
    if _malloc_trim() is None:
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(release_free_memory)
