"""One chat socket's trials, followed live: the user's event feed → `trial` frames → the conversation.

The follower reads the same per-user feed as `GET /api/events` (`EventBus` + Firestore `events`): it
subscribes to the bus, which wakes it at once for an event of this process and, through the Firestore
listener (`feed.py`), of another replica; `sse_poll_seconds` is only the safety net. It runs while
the socket has a trial in flight and stops after the last one ended. Tool steps are not in the feed
(they are the run's own step events, on its pod's log): while the run is Running its pod's log is
followed (pushed by the kubelet, line by line), and it is read once more when the run waits for an
approval and when it ends (just before its hidden Agent, and so its pod, is deleted) for anything
the follow missed; the keys in `seen` keep each step to one part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agentry_common.models import Phase

from ...auth import User
from ...storage import Store, now_iso
from ..errors import Unavailable
from ..events import EventBus
from ..views import execution_event
from .parts import TERMINAL, event_parts
from .run import TrialService

log = logging.getLogger("agentry.api.trials")
Doc = dict[str, Any]
Send = Callable[[Doc], Awaitable[None]]
PAGE = 500
MAX_PARTS = 100  # per trial, stored with the conversation (a document is at most 1 MiB)
MAX_TRIALS = 20  # per conversation; the oldest are dropped from it (their runs stay listed)
STEP_PHASES = TERMINAL | {Phase.WAITING_APPROVAL.value}


@dataclass
class Followed:
    entry: Doc  # the trial's record in conv["trials"]
    after: int = 0  # the last feed event applied to it (a re-read never applies one twice)
    last_status: Doc | None = None
    seen: set[str] = field(default_factory=set)
    tail: asyncio.Task[None] | None = None  # following the pod's log while the run is Running


def new_entry(doc: Doc, conv: Doc) -> Doc:
    """A trial's record in the conversation: after which message it started, and its parts."""
    return {
        "execution": doc["id"],
        "input": doc.get("input"),
        "after": len(conv["messages"]),
        "createdAt": now_iso(),
        "done": False,
        "parts": [],
    }


class TrialFollower:
    def __init__(
        self,
        trials: TrialService,
        bus: EventBus,
        store: Store,
        user: User,
        conv: Doc,
        send: Send,
        poll: float,
    ) -> None:
        self.trials, self.bus, self.store, self.user, self.conv = trials, bus, store, user, conv
        self.send, self.poll = send, poll  # `send` is safe from several tasks (the router locks it)
        self.followed: dict[str, Followed] = {}
        self.last = 0
        self.task: asyncio.Task[None] | None = None

    def follow(self, entry: Doc, since: int) -> None:
        """Follow a trial from feed event `since` on (read before its run was created)."""
        self.followed[entry["execution"]] = Followed(entry, after=since)
        self._start(since)

    def _start(self, since: int) -> None:
        if self.task is None or self.task.done():
            self.last = since
            self.task = asyncio.get_running_loop().create_task(self._run())
        else:
            self.last = min(self.last, since)

    async def resume(self) -> None:
        """After a reload: follow the conversation's trials that had not ended, from their stored state."""
        pending = [t for t in self.conv.get("trials", []) if not t.get("done")]
        if not pending:
            return
        since = await self.store.last_event_seq(self.user.id)
        for entry in pending:
            doc = await self.store.execution(entry["execution"])
            if doc is None:
                entry["done"] = True
                continue
            followed = Followed(entry, after=since, last_status=_last_status(entry))
            self.followed[entry["execution"]] = followed
            await self._apply(followed, {"kind": "execution", "data": execution_event(doc, "status")})
        await self.store.put_conversation(self.conv)
        if self.followed:
            self._start(since)

    async def sweep(self) -> None:
        """Delete the user's ended trials that no socket finished (closed mid-run): at each open."""
        with contextlib.suppress(Unavailable):
            await self.trials.sweep(self.user)

    async def close(self) -> None:
        for followed in self.followed.values():
            if followed.tail is not None:
                followed.tail.cancel()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> None:
        try:
            await self._follow()
        except Exception as exc:  # the socket went away mid-send, or Firestore failed: the sweep cleans up
            log.warning("trial follower of %s stopped: %s: %s", self.user.id, type(exc).__name__, exc)
            raise

    async def _follow(self) -> None:
        with self.bus.subscribe(self.user.id) as sub:
            while self.followed:
                sub.arm()
                events = await self.store.events_after(self.user.id, self.last, PAGE)
                changed = False
                for event in events:
                    self.last = int(event["seq"])
                    followed = self.followed.get(str((event.get("data") or {}).get("execution")))
                    if followed is not None and self.last > followed.after:
                        followed.after = self.last
                        changed = await self._apply(followed, event) or changed
                if changed:
                    await self.store.put_conversation(self.conv)
                if len(events) < PAGE and self.followed:
                    await sub.wait(self.poll)

    async def _apply(self, followed: Followed, event: Doc) -> bool:
        """Send and record the parts one event adds; finish the trial if its run ended."""
        name = followed.entry["execution"]
        parts = event_parts(event, followed.last_status)
        status = next((p for p in parts if p["kind"] == "status"), None)
        if status is not None:
            followed.last_status = status
            if status["phase"] == Phase.RUNNING.value and followed.tail is None:
                followed.tail = asyncio.get_running_loop().create_task(self._tail(followed))
            if status["phase"] in STEP_PHASES:
                if followed.tail is not None:
                    followed.tail.cancel()
                    followed.tail = None
                at = parts.index(status) + 1
                parts[at:at] = await self.trials.tool_steps(name, followed.seen)
        ended = status is not None and status["phase"] in TERMINAL
        for part in parts:
            await self._part(followed, part)
        if ended:
            followed.entry["done"] = True
            del self.followed[name]
            await self.store.put_conversation(self.conv)  # stored before the client hears it ended
            await self.trials.finish(name)
            await self.send({"type": "trial", "execution": name, "part": {"kind": "done"}, "done": True})
        return bool(parts)

    async def _part(self, followed: Followed, part: Doc) -> None:
        if len(followed.entry["parts"]) < MAX_PARTS:
            followed.entry["parts"].append(part)
        await self.send(
            {"type": "trial", "execution": followed.entry["execution"], "part": part, "done": False}
        )

    async def _tail(self, followed: Followed) -> None:
        """Tool steps as the pod logs them; stored with the conversation at the run's next change."""
        async for part in self.trials.live_tool_steps(followed.entry["execution"], followed.seen):
            await self._part(followed, part)


def _last_status(entry: Doc) -> Doc | None:
    return next((p for p in reversed(entry.get("parts", [])) if p.get("kind") == "status"), None)


def record(conv: Doc, entry: Doc) -> None:
    """Add a trial to the conversation, dropping the oldest past MAX_TRIALS."""
    trials = conv.setdefault("trials", [])
    trials.append(entry)
    del trials[:-MAX_TRIALS]
