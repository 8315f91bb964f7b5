"""Journal entries riding a model call (checkpoints/boundary.py): stored under the append's rules,
their last seq answered; entries that cannot be stored leave the call alone and answer none; the
steering check is the call's own, whatever rides it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest

from agentry_common.checkpoints import RIDING_HEADER, Entry, encode_riding, entry_json, sign_entry
from agentry_common.governance import RefusalType, budget_subjects
from agentry_common.steering import INBOX_SEEN_HEADER, SteerRequest
from agentry_common.tokens import Claims
from agentry_gateway.budgets import Calendar, Thresholds
from agentry_gateway.calls import Rejected
from agentry_gateway.checkpoints import MemoryCheckpointStore, RunRef
from agentry_gateway.checkpoints.boundary import check_boundary, store_riding
from agentry_gateway.ledger import MemoryLedger
from agentry_gateway.metrics import Metrics

pytestmark = pytest.mark.unit

KEY = "state-key"
CLAIMS = Claims(typ="run", exp=0, namespace="ns", execution="ex", execution_uid="uid-1", agent="a")
RUN = RunRef("ns", "uid-1", "ex", "a")


def chain(first: int, last: int) -> list[Entry]:
    entries, sig = [], ""
    for seq in range(1, last + 1):
        entry = sign_entry(KEY, sig, seq, "message", {"n": seq})
        sig = entry.sig
        entries.append(entry)
    return entries[first - 1 :]


def riding(entries: list[Entry], seen: int | None = 0) -> dict[str, str]:
    value = encode_riding([entry_json(e) for e in entries])
    assert value is not None
    return {RIDING_HEADER: value, **({INBOX_SEEN_HEADER: str(seen)} if seen is not None else {})}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger([], Calendar("UTC"), Thresholds(), 86400)


async def ride(
    store: MemoryCheckpointStore,
    ledger: MemoryLedger,
    metrics: Metrics,
    claims: Claims,
    headers: dict[str, str],
) -> int | None:
    """What the gateway does beside routing the call: None when nothing rides or it is not stored."""
    storing = store_riding(store, ledger, metrics, claims, headers, spawn)
    return await storing.stored() if storing is not None else None


def spawn(coro: Coroutine[Any, Any, int | None], what: str) -> asyncio.Task[int | None]:
    return asyncio.create_task(coro)


async def test_riding_entries_are_stored_before_the_call_and_their_last_answered(
    ledger: MemoryLedger,
) -> None:
    store, metrics = MemoryCheckpointStore(), Metrics()
    assert await ride(store, ledger, metrics, CLAIMS, riding(chain(1, 3))) == 3
    assert [e.seq for e in (await store.read(RUN, 0)).entries] == [1, 2, 3]
    # The same batch again (a retried call): answered, not written twice.
    assert await ride(store, ledger, metrics, CLAIMS, riding(chain(1, 3))) == 3
    assert await ride(store, ledger, metrics, CLAIMS, riding(chain(4, 5))) == 5
    assert sample(metrics, "agentry_gateway_checkpoint_appends_total", outcome="stored") == 2
    assert sample(metrics, "agentry_gateway_checkpoint_appends_total", outcome="repeated") == 1


async def test_riding_entries_are_kept_as_they_were_sent(ledger: MemoryLedger) -> None:
    """The store keeps (and counts) each entry's JSON as it rode, not a serialisation of its own."""
    store, metrics = MemoryCheckpointStore(), Metrics()
    entries = chain(1, 2)
    spaced = [json.dumps(e.wire()) for e in entries]  # ", " and ": ": longer than canonical JSON
    value = encode_riding(spaced)
    assert value is not None
    assert await ride(store, ledger, metrics, CLAIMS, {RIDING_HEADER: value}) == 2
    written = sample(metrics, "agentry_gateway_checkpoint_bytes_total")
    assert written == sum(len(t) for t in spaced) > sum(len(entry_json(e)) for e in entries)


async def test_entries_that_cannot_be_stored_leave_the_call_alone(ledger: MemoryLedger) -> None:
    store, metrics = MemoryCheckpointStore(), Metrics()
    await ride(store, ledger, metrics, CLAIMS, riding(chain(1, 2)))
    # Not the journal's next seq (another pod of the run is ahead): not stored, the call goes on.
    assert await ride(store, ledger, metrics, CLAIMS, riding(chain(4, 5))) is None
    assert sample(metrics, "agentry_gateway_checkpoint_conflicts_total") == 1
    broken = {RIDING_HEADER: "not base64!", INBOX_SEEN_HEADER: "0"}
    assert await ride(store, ledger, metrics, CLAIMS, broken) is None
    assert sample(metrics, "agentry_gateway_checkpoint_refused_total", reason="invalid") == 1
    # A person's token (a designer turn) has no journal: nothing is stored for it.
    user = Claims(typ="user", exp=0, namespace="ns", user="u1", execution_uid="uid-1")
    assert await ride(store, ledger, metrics, user, riding(chain(3, 3))) is None
    assert [e.seq for e in (await store.read(RUN, 0)).entries] == [1, 2]


async def test_an_ended_runs_entries_are_not_stored(ledger: MemoryLedger) -> None:
    store, metrics = MemoryCheckpointStore(), Metrics()
    subject = budget_subjects("ns", "-", "ex", "uid-1", None).execution
    await ledger.end_execution(subject)
    assert await ride(store, ledger, metrics, CLAIMS, riding(chain(1, 1))) is None
    assert (await store.read(RUN, 0)).last == 0


async def test_a_queued_message_refuses_the_call_and_its_entries_are_stored_all_the_same(
    ledger: MemoryLedger,
) -> None:
    store, metrics = MemoryCheckpointStore(), Metrics()
    req = SteerRequest(namespace="ns", execution="ex", uid="uid-1", text="stop that", by="ada")
    await store.post(RUN, req)
    headers = riding(chain(1, 2), seen=0)
    storing = store_riding(store, ledger, metrics, CLAIMS, headers, spawn)
    with pytest.raises(Rejected) as refused:
        await check_boundary(store, CLAIMS, headers)
    assert refused.value.kind == RefusalType.STEERING_QUEUED.value and refused.value.status == 409
    assert storing is not None and await storing.stored() == 2 and (await store.read(RUN, 0)).last == 2
    # A call that has seen the message goes on; one that names no inbox is not checked.
    await check_boundary(store, CLAIMS, riding(chain(3, 3), seen=1))
    await check_boundary(store, CLAIMS, riding(chain(3, 3), seen=None))
    assert store_riding(store, ledger, metrics, CLAIMS, {INBOX_SEEN_HEADER: "1"}, spawn) is None
