"""Where a run's journal goes: the LLM gateway's checkpoint routes (agentry_common.checkpoints),
reached with the run token; and the writer that redacts, signs and appends entries (journal.py says
what they mean)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from agentry_common.checkpoints import (
    BESIDE_CALL_HEADER,
    CHECKPOINT_PATH,
    ENV_CHECKPOINT_URL,
    ENV_PARENT_EXECUTION,
    ENV_PARENT_STATE_KEYS,
    MAX_ENTRIES_PER_APPEND,
    MAX_ENTRY_BYTES,
    AppendAnswer,
    Close,
    Entry,
    Journal,
    Signed,
    append_body,
    encode_riding,
    json_bytes,
    parse_keys,
    sign,
    verify_chain,
)
from agentry_common.statesig import ENV_STATE_KEY
from agentry_common.steering import INBOX_PATH, Inbox

from .config import ConfigError
from .events import EventSink, now_rfc3339

# The run token stands in for the provider keys (the operator sets both); a local run has none.
TOKEN_ENVS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_AUTH_TOKEN")
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
REQUEST_TIMEOUT = 30.0


class Fenced(Exception):
    """409: another pod of the run has appended past this one; this pod must stop at once."""

    def __init__(self, last: int) -> None:
        super().__init__(f"another pod of this run is ahead (its journal is at entry {last})")
        self.last = last


class Refused(Exception):
    """The store will not take the entries (413, or another 4xx): the run goes on without a journal."""


class Store(Protocol):
    async def read(self, *, parent: bool = False) -> list[Entry]: ...

    async def append(
        self,
        entries: list[Signed],
        *,
        delivered: list[int] | None = None,
        close: Close | None = None,
        beside: bool = False,
    ) -> AppendAnswer | None: ...

    async def inbox(self, after: int, wait: int = 0) -> Inbox: ...

    async def aclose(self) -> None: ...


class GatewayStore:
    """The gateway's routes. Network errors and 5xx are retried with backoff until they succeed (a
    gateway restart must not lose the run; the run's deadline bounds the wait)."""

    def __init__(self, base_url: str, token: str, *, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT,
            # Plain http (the gateway's in-cluster Service) has no TLS to verify: loading the CA bundle
            # would cost tens of milliseconds at every pod's start for nothing.
            verify=base_url.startswith("https://"),
        )

    async def _send(self, method: str, path: str = CHECKPOINT_PATH, **kwargs: Any) -> httpx.Response:
        wait = BACKOFF_START
        while True:
            try:
                response = await self.client.request(method, path, **kwargs)
                if response.status_code < 500:
                    return response
            except httpx.TransportError:
                pass
            await asyncio.sleep(wait)
            wait = min(wait * 2, BACKOFF_MAX)

    async def read(self, *, parent: bool = False) -> list[Entry]:
        entries: list[Entry] = []
        after = 0
        while True:
            params: dict[str, Any] = {"after": after, **({"of": "parent"} if parent else {})}
            response = await self._send("GET", params=params)
            if response.status_code != 200:
                what = "its parent's journal" if parent else "its journal"
                raise ConfigError(
                    f"the gateway refused {what}: HTTP {response.status_code} {_detail(response)}"
                )
            try:
                page = Journal.model_validate(response.json())
            except (ValidationError, ValueError) as err:
                raise ConfigError(f"the gateway's journal is malformed: {err}") from None
            entries.extend(page.entries)
            if not page.more or not page.entries:
                return entries
            after = page.entries[-1].seq

    async def append(
        self,
        entries: list[Signed],
        *,
        delivered: list[int] | None = None,
        close: Close | None = None,
        beside: bool = False,
    ) -> AppendAnswer | None:
        """`beside`: sent while the run's model call is under way (the gateway routes it first)."""
        body = append_body([e.json for e in entries], delivered or [], close)
        headers = {"content-type": "application/json", **({BESIDE_CALL_HEADER: "1"} if beside else {})}
        response = await self._send("POST", content=body, headers=headers)
        if response.status_code == 409:
            last = response.json().get("last", 0) if _is_json(response) else 0
            raise Fenced(int(last))
        if response.status_code >= 400:
            raise Refused(f"HTTP {response.status_code} {_detail(response)}")
        try:
            return AppendAnswer.model_validate(response.json())
        except (ValidationError, ValueError):
            return None  # stored; the answer's inbox part is only a hint

    async def inbox(self, after: int, wait: int = 0) -> Inbox:
        """The run's queued steering messages after `after` (agentry_common.steering); `wait`: a long
        poll. A refusal answers an empty inbox: steering is a hint, never a reason to stop the run."""
        timeout = REQUEST_TIMEOUT + wait
        response = await self._send("GET", INBOX_PATH, params={"after": after, "wait": wait}, timeout=timeout)
        try:
            return Inbox.model_validate(response.json()) if response.status_code == 200 else Inbox()
        except (ValidationError, ValueError):
            return Inbox()

    async def aclose(self) -> None:
        await self.client.aclose()


def _is_json(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("application/json")


def _detail(response: httpx.Response) -> str:
    if _is_json(response):
        body = response.json()
        return str(body.get("detail", "")) if isinstance(body, dict) else ""
    return response.text[:200]


@dataclass(frozen=True)
class Riding:
    """Staged entries sent with a model call (RIDING_HEADER): stored once its answer says so."""

    header: str
    last: int  # the seq of the last of them
    delivered: list[int]


@dataclass
class Loaded:
    """A verified journal as read at start: the run's own entries, and its parent's (a follow-up)."""

    own: list[Entry]
    parent: list[Entry] | None
    parent_name: str


class JournalWriter:
    """Stages entries (redacted by the run's redaction step, then signed in the chain) and appends
    them in one request per flush."""

    def __init__(
        self, store: Store, key: str, events: EventSink, *, parent_keys: list[str], parent_name: str
    ) -> None:
        self.store, self.key, self.events = store, key, events
        self.parent_keys, self.parent_name = parent_keys, parent_name
        self.seq, self.sig, self.last_at = 0, "", ""
        self.staged: list[Signed] = []
        self.off = ""  # why the run goes on without a journal ("" while it has one)
        self.resumes = 0
        self.interrupted_calls = 0
        # Steering (steering.py): what the last append said of the inbox, and the inbox seqs of the
        # messages the staged entries deliver (sent with them).
        self.inbox_hint = 0
        self.closed = False
        self.delivering: list[int] = []
        self.busy = False  # an append is on its way

    async def load(self) -> Loaded:
        """The run's journal (and its parent's), verified; raises ConfigError on forged state."""
        own = await self.store.read()
        if verify_chain([self.key], own) is None:
            raise ConfigError(
                f"the run's checkpoint journal ({len(own)} entries) does not verify with "
                f"{ENV_STATE_KEY}: it was altered or belongs to another run; not resuming from it"
            )
        if own:
            self.seq, self.sig, self.last_at = own[-1].seq, own[-1].sig, own[-1].at
        parent = None
        if self.parent_name:
            parent = await self.store.read(parent=True)
            if verify_chain(self.parent_keys, parent) is None or not parent:
                raise ConfigError(
                    f"the journal of the parent run {self.parent_name!r} ({len(parent)} entries) does not "
                    f"verify with any key of {ENV_PARENT_STATE_KEYS}: not continuing from it"
                )
        return Loaded(own, parent, self.parent_name)

    def stage(self, kind: str, data: dict[str, Any], redact: Callable[[Any], Any] | None = None) -> None:
        if self.off:
            return
        clean: dict[str, Any] = (redact or self.events.redact)(data)  # before signing: see signed_state
        self.seq += 1
        signed = sign(self.key, self.sig, self.seq, kind, clean, at=now_rfc3339())
        self.sig = signed.sig
        self.staged.append(signed)

    async def flush(self, close: Close | None = None, *, beside: bool = False) -> None:
        """Append what is staged; returns once it is stored. Raises Fenced (409). The last batch
        carries the delivered steering seqs and `close` (the run's end closes its inbox); `beside`: a
        model call is under way."""
        self.busy = True
        try:
            await self._flush(close, beside)
        finally:
            self.busy = False

    async def _flush(self, close: Close | None, beside: bool) -> None:
        while self.staged and not self.off:
            batch = self.staged[:MAX_ENTRIES_PER_APPEND]
            last_batch = len(batch) == len(self.staged)
            extra: dict[str, Any] = {"delivered": self.delivering, "close": close} if last_batch else {}
            too_big = [e.seq for e in batch if json_bytes(e.json) > MAX_ENTRY_BYTES]
            try:
                if too_big:
                    raise Refused(f"entry {too_big[0]} is larger than {MAX_ENTRY_BYTES} bytes")
                answer = await self.store.append(batch, beside=beside, **extra)
            except Refused as err:
                self._turn_off(f"the checkpoint store refused the journal ({err})")
                return
            if answer is not None:
                self.inbox_hint, self.closed = answer.inbox, answer.closed
            self._stored(batch, self.delivering if last_batch else [])

    def _stored(self, batch: list[Signed], delivered: list[int]) -> None:
        """`batch`, the first staged entries, is stored, and so are the steering seqs `delivered`."""
        self.last_at = batch[-1].at
        del self.staged[: len(batch)]
        self.delivering = [seq for seq in self.delivering if seq not in delivered]

    def riding(self) -> Riding | None:
        """What is staged, to ride a model call (None: nothing, too much, or an append on its way,
        which must be stored first)."""
        # Within MAX_RIDING_BYTES, every entry is far below MAX_ENTRY_BYTES.
        if self.off or self.busy or not self.staged or len(self.staged) > MAX_ENTRIES_PER_APPEND:
            return None
        delivered = list(self.delivering)
        value = encode_riding([e.json for e in self.staged], delivered)
        return Riding(value, self.staged[-1].seq, delivered) if value is not None else None

    def stored(self, riding: Riding, last: int) -> None:
        """The gateway stored the journal up to `last` with the call `riding` rode."""
        if last < riding.last:
            return  # not all of them: the next append sends them again
        done = [e for e in self.staged if e.seq <= riding.last]
        if done:
            self._stored(done, riding.delivered)

    async def resend(self, riding: Riding) -> None:
        """Append the entries that rode a call whose answer does not name them stored, as the same
        batch (the gateway may have stored them: then it is an exact retry), before what was staged
        since (which would make it another batch, refused as a fence)."""
        later = [e for e in self.staged if e.seq > riding.last]
        del self.staged[len(self.staged) - len(later) :]
        try:
            await self.flush()
        finally:
            if not self.off:
                self.staged.extend(later)

    async def write(self, kind: str, data: dict[str, Any]) -> None:
        self.stage(kind, data)
        await self.flush()

    def _turn_off(self, why: str) -> None:
        self.off = why
        self.staged.clear()
        self.delivering = []
        self.events.emit("warning", message=f"{why}: the run goes on without checkpoints")

    def status(self) -> dict[str, Any]:
        """The result's `checkpoint` (agentry_common.models.CheckpointStatus, camelCase)."""
        data: dict[str, Any] = {
            "entries": self.seq - len(self.staged),
            "resumes": self.resumes,
            "interruptedCalls": self.interrupted_calls,
            "lastAt": self.last_at or None,
        }
        if self.off:
            data["note"] = self.off
        return {k: v for k, v in data.items() if v is not None}


def open_journal(env: Mapping[str, str], events: EventSink) -> JournalWriter | None:
    """The run's journal writer when ENV_CHECKPOINT_URL is set, else None (no journal: a local run,
    or a cluster without the gateway)."""
    url = env.get(ENV_CHECKPOINT_URL, "").strip()
    key = env.get(ENV_STATE_KEY, "").strip()
    parent_name = env.get(ENV_PARENT_EXECUTION, "").strip()
    parent_keys = parse_keys(env.get(ENV_PARENT_STATE_KEYS, ""))
    if url:
        if not key:
            raise ConfigError(
                f"{ENV_CHECKPOINT_URL} is set but {ENV_STATE_KEY} is not: the journal must be signed"
            )
        token = next((v for name in TOKEN_ENVS if (v := env.get(name, "").strip())), "")
        if not token:
            raise ConfigError(f"{ENV_CHECKPOINT_URL} is set but no run token ({', '.join(TOKEN_ENVS)})")
        store = GatewayStore(url, token)
        return JournalWriter(store, key, events, parent_keys=parent_keys, parent_name=parent_name)
    if parent_name:
        raise ConfigError(
            f"{ENV_PARENT_EXECUTION} is set but {ENV_CHECKPOINT_URL} is not: "
            "a follow-up needs its parent's journal"
        )
    return None
