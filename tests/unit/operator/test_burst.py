"""The fire burst gate: reconciles wait while fires are in flight, never longer than its bound."""

from __future__ import annotations

import asyncio

import pytest

from agentry_operator import burst

pytestmark = pytest.mark.unit


async def test_a_reconcile_waits_for_the_fires_in_flight() -> None:
    gate, order = burst.Burst(), []
    release = asyncio.Event()

    async def fire() -> None:
        async with gate.firing():
            await release.wait()
            order.append("fire")

    async def reconcile() -> None:
        await gate.settled()
        order.append("reconcile")

    fires = [asyncio.create_task(fire()) for _ in range(3)]
    await asyncio.sleep(0)
    waiting = asyncio.create_task(reconcile())
    await asyncio.sleep(0.05)
    assert order == [] and gate.in_flight == 3
    release.set()
    await asyncio.gather(*fires, waiting)
    assert order == ["fire", "fire", "fire", "reconcile"] and gate.in_flight == 0


async def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(burst, "MAX_WAIT_SECONDS", 0.05)
    gate = burst.Burst()
    async with gate.firing():  # a fire that never ends in time
        await asyncio.wait_for(gate.settled(), 5)
        assert gate.in_flight == 1
    await gate.settled()  # none in flight: at once
