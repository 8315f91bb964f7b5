"""Keep a server's start-up objects out of the garbage collector's full collections.

A server imports tens of thousands of long-lived objects (modules, classes, the clients' protobuf
and pydantic machinery) before it serves anything. CPython's full (generation 2) collection walks
every tracked object, so each one paused the API's event loop for 25-75 ms under load: the requests
caught behind it were the read latency's p99 (`bench/api_latency.py`). `gc.freeze()` moves the objects
alive at that moment to a permanent generation the collector skips; what a server allocates later
(requests, caches) is collected as before. Frozen objects are still freed when their last reference
goes, but a cycle among them never is: so it happens once per process (a test process that starts
many apps freezes the first one's only), after the start-up garbage has been collected.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> int:
    """Collect the start-up garbage, then freeze what is left (the first call in a process only);
    returns how many objects are frozen."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
    return gc.get_freeze_count()
