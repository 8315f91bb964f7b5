"""An append sent beside a model call waits while calls are being routed, never longer than its
bound, and not at all when none is (checkpoints/beside.py)."""

from __future__ import annotations

import asyncio

import pytest

from agentry_gateway.checkpoints.beside import CallsFirst

pytestmark = pytest.mark.unit


async def test_an_append_goes_once_every_call_being_routed_has_gone_upstream() -> None:
    gate = CallsFirst(most_seconds=30)
    assert await gate.wait() is False  # nothing routed: at once
    first, second = gate.enter(), gate.enter()
    append = asyncio.create_task(gate.wait())
    await asyncio.sleep(0.01)
    first()
    first()  # leaving twice (sent upstream, then the handler's end) counts once
    await asyncio.sleep(0.01)
    assert not append.done() and gate.routing == 1
    second()
    assert await asyncio.wait_for(append, 5) is True
    assert gate.routing == 0 and await gate.wait() is False


async def test_a_call_that_never_goes_upstream_holds_an_append_only_for_the_bound() -> None:
    gate = CallsFirst(most_seconds=0.02)
    gate.enter()  # never left
    assert await asyncio.wait_for(gate.wait(), 5) is True
