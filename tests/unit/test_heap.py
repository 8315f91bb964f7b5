"""The servers' start-up heap is frozen once per process (agentry_common/heap.py)."""

from __future__ import annotations

import gc

import pytest

from agentry_common.heap import freeze_startup_heap

pytestmark = pytest.mark.unit


def test_the_start_up_heap_is_frozen_once_per_process() -> None:
    frozen = freeze_startup_heap()
    assert frozen > 0  # the imports' objects: out of the collector's full collections
    later = [[i] for i in range(10_000)]  # what a server allocates while it serves
    assert freeze_startup_heap() == frozen  # a second app in the same process freezes nothing more
    assert gc.get_freeze_count() == frozen
    assert later[-1] == [9_999]
