"""A run's steering inbox on the in-memory store (the rules every store applies): double-texting
queue, replace and reject, the bounds, the hint every append answers, delivery marked by the append
that journals it, and the inbox closed by the run's last append (the race with a message posted
at the run's end)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from agentry_common.checkpoints import Close, Entry, sign_entry
from agentry_common.models import DoubleTexting
from agentry_common.steering import MAX_PENDING, MessageState, Refusal, SteerRequest
from agentry_gateway.checkpoints import MemoryCheckpointStore, RunRef
from agentry_gateway.checkpoints.inbox import InboxRefused

pytestmark = pytest.mark.unit

RUN = RunRef("team-a", "uid-1", "ex-1", "agent-a")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def msg(
    text: str = "also check Friday", pending: DoubleTexting = DoubleTexting.QUEUE, **kw: Any
) -> SteerRequest:
    return SteerRequest(
        namespace="team-a", execution="ex-1", uid="uid-1", text=text, by="ada", pending=pending, **kw
    )


def entry(seq: int, previous: str = "") -> Entry:
    return sign_entry("key", previous, seq, "message", {"n": seq})


def states(store: MemoryCheckpointStore) -> dict[int, str]:
    box = run(store.inbox(RUN, 0, every=True))
    return {m.seq: m.state.value for m in box.messages}


def test_queue_appends_in_order_and_the_append_answer_says_so() -> None:
    store = MemoryCheckpointStore()
    assert run(store.append(RUN, [entry(1)], [], None)).inbox == 0
    first = run(store.post(RUN, msg("one")))
    second = run(store.post(RUN, msg("two")))
    assert (first.message.seq, second.message.seq) == (1, 2) and second.superseded == []
    answer = run(store.append(RUN, [entry(2, entry(1).sig)], [], None))
    assert (answer.last, answer.inbox, answer.closed) == (2, 2, False)
    queued = run(store.inbox(RUN, 0))
    assert [m.text for m in queued.messages] == ["one", "two"]
    assert [m.text for m in run(store.inbox(RUN, 1)).messages] == ["two"]  # after what was taken


def test_replace_supersedes_the_queued_and_reject_refuses_while_one_waits() -> None:
    store = MemoryCheckpointStore()
    run(store.post(RUN, msg("one")))
    run(store.post(RUN, msg("two")))
    answer = run(store.post(RUN, msg("three", DoubleTexting.REPLACE)))
    assert answer.superseded == [1, 2]
    assert states(store) == {1: "superseded", 2: "superseded", 3: "queued"}
    with pytest.raises(InboxRefused) as refused:
        run(store.post(RUN, msg("four", DoubleTexting.REJECT)))
    assert refused.value.refusal is Refusal.PENDING and refused.value.status == 409
    run(store.append(RUN, [entry(1)], [3], None))  # delivered: reject admits the next
    assert run(store.post(RUN, msg("four", DoubleTexting.REJECT))).message.seq == 4
    assert states(store)[3] == "delivered"


def test_the_pending_bound_is_a_429() -> None:
    store = MemoryCheckpointStore()
    for n in range(MAX_PENDING):
        run(store.post(RUN, msg(f"m{n}")))
    with pytest.raises(InboxRefused) as full:
        run(store.post(RUN, msg("one too many")))
    assert full.value.refusal is Refusal.FULL and full.value.status == 429


def test_delivery_is_marked_by_the_append_and_only_the_named_seqs() -> None:
    store = MemoryCheckpointStore()
    run(store.post(RUN, msg("one")))
    run(store.post(RUN, msg("two")))
    answer = run(store.append(RUN, [entry(1)], [1], None))
    assert answer.inbox == 2  # two is still queued
    assert states(store) == {1: "delivered", 2: "queued"}
    # An exact retry of the same append marks again and changes nothing else.
    again = run(store.append(RUN, [entry(1)], [1], None))
    assert (again.last, again.written, again.inbox) == (1, 0, 2)


def test_a_final_append_closes_only_an_idle_inbox() -> None:
    store = MemoryCheckpointStore()
    run(store.post(RUN, msg("late")))
    kept_open = run(store.append(RUN, [entry(1)], [], Close.IDLE))
    assert (kept_open.closed, kept_open.inbox) == (False, 1)  # the run goes on with it
    done = run(store.append(RUN, [entry(2, entry(1).sig)], [1], Close.IDLE))
    assert (done.closed, done.inbox) == (True, 0)
    with pytest.raises(InboxRefused) as closed:  # the race with the run's end: refused, never lost
        run(store.post(RUN, msg("after the end")))
    assert closed.value.refusal is Refusal.CLOSED


def test_an_end_closes_regardless_and_refuses_what_waits() -> None:
    store = MemoryCheckpointStore()
    run(store.post(RUN, msg("never delivered")))
    answer = run(store.append(RUN, [entry(1)], [], Close.END))
    assert answer.closed and states(store) == {1: MessageState.REFUSED.value}


def test_a_message_needs_text_unless_it_interrupts() -> None:
    with pytest.raises(ValidationError, match="text"):
        msg("   ")
    assert msg("", interrupt=True).interrupt


def test_prune_drops_the_inbox_with_the_journal() -> None:
    from agentry_common.checkpoints import PrunedRun

    store = MemoryCheckpointStore()
    run(store.post(RUN, msg("one")))
    assert run(store.prune([PrunedRun(namespace="team-a", uid="uid-1")])) == 1
    assert run(store.inbox(RUN, 0, every=True)).messages == []
