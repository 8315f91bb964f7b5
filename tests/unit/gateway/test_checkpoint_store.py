"""The checkpoint store's rules on the in-memory store: seq continuity (409 with the stored last), an
exact retry answered as stored, the limits (413), paging, pruning; and that the gateway picks the
store by its ledger."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentry_common.checkpoints import Entry, PrunedRun, entry_bytes, sign_entry, verify_chain
from agentry_common.tokens import Keyring
from agentry_gateway.checkpoints import (
    Appended,
    Conflict,
    FirestoreCheckpointStore,
    Limits,
    MemoryCheckpointStore,
    RunRef,
    TooLarge,
)
from agentry_gateway.config import GatewayConfig
from agentry_gateway.ledger import MemoryLedger
from agentry_gateway.service import Gateway
from agentry_gateway.settings import Settings

pytestmark = pytest.mark.unit

KEY = "state-key"
RUN = RunRef("team-a", "uid-1", "ex-1", "agent-a")
OTHER = RunRef("team-a", "uid-2", "ex-2", "agent-a")


def entries(first: int, n: int, *, previous: str = "", size: int = 10, key: str = KEY) -> list[Entry]:
    out: list[Entry] = []
    for seq in range(first, first + n):
        out.append(sign_entry(key, previous, seq, "answer", {"text": "x" * size}))
        previous = out[-1].sig
    return out


def chain(n: int, size: int = 10) -> list[Entry]:
    return entries(1, n, size=size)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def last_written(coro: Any) -> tuple[int, int]:
    done = run(coro)
    return done.last, done.written


def test_appends_continue_the_journal_and_read_back_whole() -> None:
    store = MemoryCheckpointStore()
    journal = chain(5)
    sizes = [entry_bytes(e) for e in journal]
    assert last_written(store.append(RUN, journal[:2])) == (2, sum(sizes[:2]))
    assert last_written(store.append(RUN, journal[2:])) == (5, sum(sizes[2:]))
    page = run(store.read(RUN, 0))
    assert (page.last, page.execution, page.more) == (5, "ex-1", False)
    assert page.entries == journal
    assert verify_chain([KEY], page.entries) == KEY
    assert run(store.read(OTHER, 0)).last == 0  # another run's journal is its own


def test_an_append_that_does_not_follow_the_stored_last_is_a_conflict_naming_it() -> None:
    store = MemoryCheckpointStore()
    journal = chain(4)
    run(store.append(RUN, journal[:2]))
    with pytest.raises(Conflict) as gap:
        run(store.append(RUN, journal[3:]))  # seq 4 after 2
    assert gap.value.last == 2 and "next is 3" in gap.value.detail
    with pytest.raises(Conflict) as first:
        run(store.append(OTHER, journal[1:2]))  # seq 2 on an empty journal
    assert first.value.last == 0
    holes = [journal[2], journal[3].model_copy(update={"seq": 5})]
    with pytest.raises(Conflict) as hole:
        run(store.append(RUN, holes))
    assert hole.value.last == 2 and "entries[1]" in hole.value.detail
    assert run(store.read(RUN, 0)).last == 2  # nothing of a refused batch was stored


def test_a_second_pod_writing_the_same_seq_loses_but_an_exact_retry_is_answered() -> None:
    store = MemoryCheckpointStore()
    mine, theirs = chain(3), entries(1, 3, key="other-key")
    assert run(store.append(RUN, mine[:2])).last == 2
    # The same batch again (its answer was lost): answered with the stored last, nothing written.
    assert last_written(store.append(RUN, mine[:2])) == (2, 0)
    assert last_written(store.append(RUN, mine[1:2])) == (2, 0)
    with pytest.raises(Conflict) as lost:
        run(store.append(RUN, theirs[:2]))  # same seqs, other signatures: another pod's
    assert lost.value.last == 2
    with pytest.raises(Conflict):
        run(store.append(RUN, mine[1:3]))  # overlaps the stored end: not a retry, not the next
    assert run(store.read(RUN, 0)).entries == mine[:2]


def test_concurrent_appends_of_the_same_seq_exactly_one_wins() -> None:
    store = MemoryCheckpointStore()
    batches = [entries(1, 1, key=f"pod-{i}") for i in range(10)]

    async def race() -> list[Any]:
        return await asyncio.gather(*(store.append(RUN, b) for b in batches), return_exceptions=True)

    results = run(race())
    won = [r for r in results if isinstance(r, Appended)]
    assert len(won) == 1 and won[0].last == 1
    assert all(isinstance(r, Conflict) and r.last == 1 for r in results if r not in won)


@pytest.mark.parametrize(
    ("limits", "batch", "reason"),
    [
        (Limits(entry_bytes=100), chain(1, size=200), "entry_bytes"),
        (Limits(per_append=3), chain(4), "entries_per_append"),
        (Limits(append_bytes=150), chain(3, size=60), "append_bytes"),
        (Limits(run_entries=3), chain(4), "run_entries"),
        (Limits(run_bytes=300), chain(5, size=60), "run_bytes"),
    ],
)
def test_limits_refuse_with_413_and_the_reason(limits: Limits, batch: list[Entry], reason: str) -> None:
    store = MemoryCheckpointStore(limits)
    with pytest.raises(TooLarge) as refused:
        run(store.append(RUN, batch))
    assert refused.value.status == 413 and refused.value.reason == reason
    assert run(store.read(RUN, 0)).last == 0


def test_run_limits_count_what_is_stored_already() -> None:
    store = MemoryCheckpointStore(Limits(run_entries=3))
    journal = chain(4)
    run(store.append(RUN, journal[:3]))
    with pytest.raises(TooLarge):
        run(store.append(RUN, journal[3:]))
    journal = chain(4, size=40)
    store = MemoryCheckpointStore(Limits(run_bytes=entry_bytes(journal[0]) * 5 // 2))
    run(store.append(RUN, journal[:2]))
    with pytest.raises(TooLarge) as refused:
        run(store.append(RUN, journal[2:3]))
    assert refused.value.reason == "run_bytes"


def test_pages_stop_at_the_byte_limit_and_say_more_follow() -> None:
    journal = chain(10, size=100)
    store = MemoryCheckpointStore(Limits(page_bytes=entry_bytes(journal[-1]) * 3))  # 3 a page
    run(store.append(RUN, journal))
    seen: list[Entry] = []
    after, pages = 0, 0
    while True:
        page = run(store.read(RUN, after))
        pages += 1
        assert page.last == 10 and 1 <= len(page.entries) <= 3
        seen += page.entries
        if not page.more:
            break
        after = page.entries[-1].seq
    assert seen == journal and pages == 4
    assert run(store.read(RUN, 10)).entries == [] and not run(store.read(RUN, 10)).more
    assert [e.seq for e in run(store.read(RUN, 7)).entries] == [8, 9, 10]


def test_a_page_holds_at_least_one_entry_whatever_its_size() -> None:
    store = MemoryCheckpointStore(Limits(page_bytes=50))
    run(store.append(RUN, chain(2, size=100)))
    page = run(store.read(RUN, 0))
    assert [e.seq for e in page.entries] == [1] and page.more


def test_prune_drops_the_named_journals_and_ignores_unknown_ones() -> None:
    store = MemoryCheckpointStore()
    run(store.append(RUN, chain(2)))
    run(store.append(OTHER, chain(1)))
    gone = [PrunedRun(namespace="team-a", uid="uid-1"), PrunedRun(namespace="team-b", uid="uid-2")]
    assert run(store.prune(gone)) == 1
    assert run(store.read(RUN, 0)).last == 0 and run(store.read(OTHER, 0)).last == 1


def test_the_gateway_keeps_journals_where_its_ledger_keeps_counters() -> None:
    config = GatewayConfig.model_validate({"channels": [{"name": "anthropic", "protocol": "anthropic"}]})
    ledger = MemoryLedger(config.budgets, config.calendar, config.thresholds, config.keep_seconds)
    gw = Gateway(Settings(ledger="memory"), config, Keyring.single("s" * 32, "k"), ledger)
    assert isinstance(gw.checkpoints, MemoryCheckpointStore)
    assert not isinstance(gw.checkpoints, FirestoreCheckpointStore)
