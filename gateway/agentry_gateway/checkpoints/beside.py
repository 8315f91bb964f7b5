"""Model calls go before the appends sent beside them (agentry_common.checkpoints.BESIDE_CALL_HEADER).

A runtime stores a turn's staged entries while that turn's model call runs, so the two requests reach
the gateway within a millisecond of each other. Served in arrival order, the append (its token, its
body, the signed chain, the store) and the call's upstream request share this event loop and the
machine's CPU, and the call reaches its provider later by that much. The runtime marks an append
beside a call only when its calls outlast an append (workspace durable.py), so nobody waits on it
until the answer: it waits, at most MOST_SECONDS, until no call is being routed (`CallsFirst`).
Other appends (a tool's intent, which the tool waits for) never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

MOST_SECONDS = 0.05  # an append beside a call never waits longer than this, however busy the gateway


class CallsFirst:
    """How many model calls are being routed: from their arrival until their upstream's first answer
    (the gateway is busy with them until they are sent; an append that waits for the answer's start
    costs nobody anything, beside a call that outlasts it)."""

    def __init__(self, most_seconds: float = MOST_SECONDS) -> None:
        self.most_seconds = most_seconds
        self.routing = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> Callable[[], None]:
        """A call starts being routed; call what this returns once its upstream first answers or it
        is refused (again is harmless)."""
        self.routing += 1
        self._idle.clear()
        left = False

        def leave() -> None:
            nonlocal left
            if left:
                return
            left = True
            self.routing -= 1
            if not self.routing:
                self._idle.set()

        return leave

    async def wait(self) -> bool:
        """Until no call is being routed, or MOST_SECONDS have passed; whether it waited."""
        if not self.routing:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.most_seconds)
        return True
