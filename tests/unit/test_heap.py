"""A process's start-up heap is frozen once (agentry_common/heap.py): the servers', a run's pod's."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys

import pytest

from agentry_common import heap
from agentry_common.heap import freeze_startup_heap, release_free_memory

pytestmark = pytest.mark.unit


def test_the_start_up_heap_is_frozen_once_per_process() -> None:
    frozen = freeze_startup_heap()
    assert frozen > 0  # the imports' objects: out of the collector's full collections
    later = [[i] for i in range(10_000)]  # what a server allocates while it serves
    assert freeze_startup_heap() == frozen  # a second app in the same process freezes nothing more
    assert gc.get_freeze_count() == frozen
    assert later[-1] == [9_999]


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_free_c_heap_is_given_back_to_the_kernel() -> None:
    # Blocks above pymalloc's 512 bytes come from the C heap; one kept in eight pins the heap's top,
    # so freeing the others leaves them resident until they are released.
    kept, freed = [], []
    for i in range(60_000):
        (kept if i % 8 == 0 else freed).append(bytes(1024 + (i * 37) % 2048))
    freed.clear()
    before = _rss_mib()
    assert release_free_memory()  # glibc here
    assert before - _rss_mib() > 40  # ~100 MiB were freed, most of it in whole pages
    assert len(kept) == 7_500


async def test_the_free_c_heap_is_released_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    thrice = asyncio.Event()
    loop = asyncio.get_running_loop()

    def release() -> bool:  # runs in a worker thread
        calls.append(1)
        if len(calls) == 3:
            loop.call_soon_threadsafe(thrice.set)
        return True

    monkeypatch.setattr(heap, "release_free_memory", release)
    task = asyncio.create_task(heap.keep_released(0.01))
    await asyncio.wait_for(thrice.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


RUN_PROBE = """
import gc, sys
from pathlib import Path
from agentry_workspace import app
from agentry_workspace.events import RecordingSink
from tests.unit.workspace.fakes import make_config

full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
# A run that ends at once (its journal has no state key): all of the runtime's start, none of a turn.
cfg = make_config(Path(sys.argv[1]), env={"AGENTRY_CHECKPOINT_URL": "http://127.0.0.1:9"})
app.execute(cfg, RecordingSink(correlation_id="c", execution="ex-1"))
print(gc.get_freeze_count(), len(full))
"""


def test_a_runs_pod_freezes_its_start_up_heap_without_collecting_it(tmp_path: object) -> None:
    """The runtime's full collections skip what its imports made, and its start does not pay for a
    full collection to get there (app._execute)."""
    out = subprocess.run(
        [sys.executable, "-c", RUN_PROBE, str(tmp_path)], capture_output=True, text=True, check=True
    )
    frozen, full_collections = map(int, out.stdout.split()[-2:])
    assert frozen > 20_000  # the runtime's imports: tens of thousands of objects
    assert full_collections == 0
