"""Durable turns: the contract between the runtime, which journals a run's progress, and the LLM
gateway, which stores the journal (docs/runs.md, "Checkpoints").

A run appends entries to its journal after every model answer and every tool result (and before
every tool call: an intent, so a lost pod's half-done call is told apart from one never started). A
pod that replaces a lost one reads the journal back and continues from its last entry, as the same
Execution. A follow-up run (an Execution with `spec.parentRef`) reads its parent's journal to start
from the whole conversation.

The gateway is the store because the run already holds a credential it accepts: the run token. The
token's claims scope what a pod may read and write: its own Execution's journal (by uid), and its
parent's (read only) when the token names one. The gateway treats entries as opaque; their meaning
(`kind`, `data`) is the runtime's (agentry_workspace/journal.py).

Every entry is signed in a chain, `sig_n = HMAC(state key, sig_{n-1} | seq | kind | data)`, with the
run's state key (statesig.py), so a journal edited, cut or reordered in the store does not verify.
State keys are derived from the token key ring and the run's uid (`derive_state_key`), so the
operator can hand a follow-up the keys its parent's journal verifies with long after the parent's
own Secret is gone. Entries are redacted by the runtime before they are signed: a journal never holds
a secret's value.

Pure module: standard library and pydantic only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# -- HTTP (the gateway's routes) ------------------------------------------------------------------------

# GET: the journal of the token's own run, or `?of=parent` its parent's; `?after=N` pages (entries with
# seq > N, at most MAX_PAGE_BYTES of them; `more` says another page follows). POST: append (own run).
CHECKPOINT_PATH: Final = "/v1/agentry/checkpoint"
# An append sent while its run's model call is under way (nothing waits on it until the answer): the
# gateway serves it once the calls it is routing have their upstream's first answer (50 ms at most).
BESIDE_CALL_HEADER: Final = "x-agentry-beside-call"
# A model call through the gateway may carry its run's staged entries (`encode_riding`: an append
# without `close`), at most MAX_RIDING_BYTES of them: the gateway stores them, as an append would,
# while it routes the call, and its answer names the last entry stored (RIDING_STORED_HEADER).
# A turn then makes one request, not two. Without that answer header nothing is known stored.
RIDING_HEADER: Final = "x-agentry-journal-append"
RIDING_STORED_HEADER: Final = "x-agentry-journal-last"
MAX_RIDING_BYTES: Final = 8 * 1024  # the header's value; the HTTP servers' header limits are 16 KiB+
# POST, service token: drop the journals of Executions that are gone (operator: history pruning,
# Agent deletion).
CHECKPOINT_PRUNE_PATH: Final = "/v1/agentry/checkpoints/prune"
CHECKPOINT_COLLECTION: Final = "runCheckpoints"  # Firestore: one document per run, entries below it

# -- limits (the gateway enforces them: 413 above) ------------------------------------------------------

MAX_ENTRY_BYTES: Final = 512 * 1024  # an entry's canonical JSON; a Firestore document is at most 1 MiB
MAX_ENTRIES_PER_APPEND: Final = 64
MAX_RUN_ENTRIES: Final = 50_000
MAX_RUN_BYTES: Final = 256 * 1024 * 1024
MAX_PAGE_BYTES: Final = 8 * 1024 * 1024

# -- the pod's environment (set by the operator when the gateway is on) ----------------------------------

ENV_CHECKPOINT_URL: Final = "AGENTRY_CHECKPOINT_URL"  # the gateway's base URL; unset: no journal
# JSON list of candidate keys the parent's journal may verify with (one per key-ring key).
ENV_PARENT_STATE_KEYS: Final = "AGENTRY_PARENT_STATE_KEYS"
SECRET_PARENT_STATE_KEYS: Final = "parent-state-keys"  # its entry in the run's Secret
ENV_PARENT_EXECUTION: Final = "AGENTRY_PARENT_EXECUTION"  # the parent's name, for events and status

# A run resumed this many times in a row without a new entry stops (ExitCode.RESUME_LIMIT) instead of
# being replaced forever (a pod OOM-killed at the same step each time).
MAX_RESUMES_WITHOUT_PROGRESS: Final = 3
# What a pod gets to finish its current step (a model answer or a tool call) after SIGTERM before it
# exits with ExitCode.INTERRUPTED: the Job's terminationGracePeriodSeconds is set above it.
STEP_GRACE_SECONDS: Final = 25
TERMINATION_GRACE_SECONDS: Final = 45

KIND_PATTERN: Final = r"^[a-z][a-z_]{0,31}$"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class Entry(_Wire):
    """One journal entry. `at`: RFC 3339 UTC, when the runtime wrote it (not signed: informational)."""

    seq: int = Field(ge=1)
    kind: str = Field(pattern=KIND_PATTERN)
    data: dict[str, Any] = Field(default_factory=dict)
    at: str = ""
    sig: str = Field(pattern=r"^[0-9a-f]{64}$")


class Close(StrEnum):
    """An append that ends the run closes its steering inbox (agentry_common.steering)."""

    IDLE = "idle"  # close unless a message is queued (then the run goes on with it)
    END = "end"  # close regardless: the run is ending


class AppendRequest(_Wire):
    """Entries must continue the journal: the first one's seq is the stored last + 1 (else 409, with
    the stored `last`: another pod of the run is ahead, and this one must stop). `delivered`: the
    inbox seqs of the steering messages these entries deliver (marked delivered in the same step);
    `close`: this append ends the run (steering.py)."""

    entries: list[Entry] = Field(min_length=1, max_length=MAX_ENTRIES_PER_APPEND)
    delivered: list[int] = Field(default_factory=list, max_length=64)
    close: Close | None = None


def append_body(entries: Sequence[str], delivered: Sequence[int] = (), close: Close | None = None) -> bytes:
    """An AppendRequest's JSON from its entries' canonical JSON (entry_json, Signed.json): entries are
    serialised once, when signed, not again for the wire."""
    tail = f',"close":"{close.value}"' if close is not None else ""
    return f'{{"entries":[{",".join(entries)}],"delivered":{list(delivered)}{tail}}}'.encode()


class _RidingHead(_Wire):
    delivered: list[int] = Field(default_factory=list, max_length=64)


@dataclass(frozen=True)
class RidingAppend:
    """The entries a RIDING_HEADER carries, each with its JSON as sent (what the store keeps: not
    serialised again), and the steering seqs they deliver."""

    entries: list[Entry]
    encoded: list[str]
    delivered: list[int]


def encode_riding(entries: Sequence[str], delivered: Sequence[int] = ()) -> str | None:
    """The RIDING_HEADER value for these entries (canonical JSON each) and delivered seqs, or None
    above MAX_RIDING_BYTES (then they are appended on their own). Base64url of lines: `{"delivered":
    [...]}`, then one entry's JSON per line (JSON text holds no raw newline)."""
    raw = "\n".join([f'{{"delivered":{list(delivered)}}}', *entries]).encode()
    if len(raw) * 4 // 3 + 4 > MAX_RIDING_BYTES:
        return None
    return base64.urlsafe_b64encode(raw).decode()


def decode_riding(value: str) -> RidingAppend:
    """What a RIDING_HEADER carries; ValueError (pydantic's included) when malformed."""
    if len(value) > MAX_RIDING_BYTES:
        raise ValueError(f"{RIDING_HEADER} is longer than {MAX_RIDING_BYTES} bytes")
    try:
        head, *lines = base64.urlsafe_b64decode(value.encode()).decode().split("\n")
    except (binascii.Error, UnicodeError) as exc:
        raise ValueError(f"{RIDING_HEADER} is not base64url of UTF-8") from exc
    if not 1 <= len(lines) <= MAX_ENTRIES_PER_APPEND:
        raise ValueError(f"{RIDING_HEADER} carries {len(lines)} entries: 1 to {MAX_ENTRIES_PER_APPEND}")
    entries = [Entry.model_validate_json(line) for line in lines]
    return RidingAppend(entries, lines, _RidingHead.model_validate_json(head).delivered)


class AppendAnswer(_Wire):
    """`inbox`: the highest queued steering message's seq (0: none); `closed`: the inbox is closed."""

    last: int
    inbox: int = 0
    closed: bool = False


class Journal(_Wire):
    """A run's journal as stored. `last` is 0 for a run with no entries (then `entries` is empty)."""

    namespace: str
    execution: str
    uid: str
    last: int = 0
    entries: list[Entry] = Field(default_factory=list)
    more: bool = False


class PruneRequest(_Wire):
    """Executions (namespace and uid) whose journals go; unknown ones are ignored."""

    runs: list[PrunedRun] = Field(max_length=500)


class PrunedRun(_Wire):
    namespace: str = Field(min_length=1, max_length=63)
    uid: str = Field(min_length=1, max_length=64)


PruneRequest.model_rebuild()


# -- signing ----------------------------------------------------------------------------------------------


# One encoder, built once: json.dumps builds a new one per call for these options (same output).
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> bytes:
    return _CANONICAL.encode(value).encode()


def entry_json(entry: Entry) -> str:
    """An entry's canonical JSON: what a store keeps and its limits count (its data is JSON already,
    as parsed or as signed: no model dump needed)."""
    wire = {"at": entry.at, "data": entry.data, "kind": entry.kind, "seq": entry.seq, "sig": entry.sig}
    return _CANONICAL.encode(wire)


def json_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def entry_bytes(entry: Entry) -> int:
    """What counts against MAX_ENTRY_BYTES and MAX_RUN_BYTES (UTF-8 bytes of entry_json)."""
    return json_bytes(entry_json(entry))


@functools.lru_cache(maxsize=16)
def _keyed(key: str) -> hmac.HMAC:
    return hmac.new(key.encode(), digestmod=hashlib.sha256)


def _signature(key: str, previous: str, seq: int, kind: str, data_json: str) -> str:
    # A copy of the keyed HMAC, not a new one: OpenSSL 3 looks its digest up again for each new
    # HMAC, which costs a run several times the hashing itself between its other work.
    mac = _keyed(key).copy()
    mac.update(f"{previous}|{seq}|{kind}|{data_json}".encode())
    return mac.hexdigest()


def chain_signature(key: str, previous: str, seq: int, kind: str, data: dict[str, Any]) -> str:
    """The signature of entry `seq`, chained to the previous entry's (`""` before the first)."""
    return _signature(key, previous, seq, kind, _CANONICAL.encode(data))


@dataclass(frozen=True, slots=True)
class Signed:
    """An entry as its writer signed it, with its canonical JSON (entry_json's, built from the same
    serialisation of `data` the signature covers: the wire reuses it). The Entry model is built only
    when asked for: a writer needs its seq, signature and time, and a run stages entries on its
    critical path."""

    seq: int
    kind: str
    data: dict[str, Any]
    at: str
    sig: str
    json: str

    @property
    def entry(self) -> Entry:
        return Entry(seq=self.seq, kind=self.kind, data=self.data, at=self.at, sig=self.sig)


_KIND: Final = re.compile(KIND_PATTERN)


def sign(key: str, previous: str, seq: int, kind: str, data: dict[str, Any], at: str = "") -> Signed:
    if seq < 1 or not _KIND.fullmatch(kind):
        raise ValueError(f"journal entry {seq}: kind {kind!r} must match {KIND_PATTERN}, seq must be >= 1")
    data_json = _CANONICAL.encode(data)
    sig = _signature(key, previous, seq, kind, data_json)
    # The keys in canonical() order (at, data, kind, seq, sig): tested equal to entry_json(entry).
    at_json, kind_json = _CANONICAL.encode(at), _CANONICAL.encode(kind)
    text = f'{{"at":{at_json},"data":{data_json},"kind":{kind_json},"seq":{seq},"sig":"{sig}"}}'
    return Signed(seq, kind, data, at, sig, text)


def sign_entry(key: str, previous: str, seq: int, kind: str, data: dict[str, Any], at: str = "") -> Entry:
    return sign(key, previous, seq, kind, data, at).entry


def verify_chain(keys: Iterable[str], entries: Sequence[Entry]) -> str | None:
    """The key the whole journal verifies with (seq 1, 2, ... without a gap, each signature chained),
    or None when no key does. An empty journal verifies with the first key."""
    candidates = [k for k in keys if k]
    for key in candidates:
        previous, ok = "", True
        for expected, entry in enumerate(entries, start=1):
            sig = chain_signature(key, previous, entry.seq, entry.kind, entry.data)
            if entry.seq != expected or not hmac.compare_digest(sig, entry.sig):
                ok = False
                break
            previous = entry.sig
        if ok:
            return key
    return None


def derive_state_key(ring_key: bytes, namespace: str, uid: str) -> str:
    """A run's state key: HMAC of its namespace and uid under a token key-ring key (hex). Knowing it
    tells nothing about another run's key or the ring key."""
    return hmac.new(ring_key, f"agentry-state/{namespace}/{uid}".encode(), hashlib.sha256).hexdigest()


def parent_state_keys(ring_keys: Iterable[bytes], namespace: str, parent_uid: str) -> list[str]:
    """The keys a parent's journal may have been signed with: one per key of the ring (the parent's
    key id is not recorded; a key dropped from the ring after rotation leaves the parent unverifiable)."""
    return [derive_state_key(k, namespace, parent_uid) for k in ring_keys]


def parse_keys(raw: str) -> list[str]:
    """ENV_PARENT_STATE_KEYS's value; malformed or empty: no keys."""
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [k for k in value if isinstance(k, str) and k] if isinstance(value, list) else []
