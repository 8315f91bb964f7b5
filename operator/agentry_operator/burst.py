"""The fire burst: while schedule timers' creates are in flight, reconciles of new objects wait a
little, so a thousand schedules firing in the same second send their creates first and the runs'
Jobs follow (bench/schedule_drift.py). The wait is bounded: a steady stream of fires never starves
the runs it creates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

MAX_WAIT_SECONDS = 2.0


class Burst:
    def __init__(self) -> None:
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def firing(self) -> AsyncIterator[None]:
        """Around one fire time's create."""
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def settled(self) -> None:
        """Return once no fire is in flight, or after MAX_WAIT_SECONDS."""
        if self.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), MAX_WAIT_SECONDS)


BURST = Burst()  # one per operator process: its timers and its reconciles share it
