"""Follow-ups' pure parts: the reply body, why a run cannot be continued, the thread, the mirror's parent.

Against the real API, control plane and operator: tests/integration/api/test_follow_ups.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from agentry_api.schemas.steering import MessageOrInterrupt as MessageIn
from agentry_api.services.follow_ups import FollowUps, refusal, relatives, root_of, thread_of
from agentry_api.services.runs import first_mirror
from agentry_api.services.views import execution_out, execution_view

pytestmark = pytest.mark.unit


def cr(phase: str | None, checkpoint: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"phase": phase, **status}
    if checkpoint is not None:
        body["checkpoint"] = checkpoint
    return {"metadata": {"name": "r1"}, "spec": {"agentRef": {"name": "a"}}, "status": body}


def test_the_message_is_required_bounded_and_strict() -> None:
    assert MessageIn.model_validate({"message": "and Friday?"}).message == "and Friday?"
    for bad in ({}, {"message": ""}, {"message": "  \n "}, {"message": "x" * 65537}, {"message": 3}):
        with pytest.raises(ValidationError) as raised:
            MessageIn.model_validate(bad)
        assert raised.value.errors()[0]["loc"] == ("message",), bad
    with pytest.raises(ValidationError, match="owner"):
        MessageIn.model_validate({"message": "x", "owner": "someone"})
    assert len(MessageIn.model_validate({"message": "x" * 65536}).message) == 65536


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (None, "no longer exists in the cluster"),
        (cr(None), "is still Pending: a live run is steered, not continued"),
        (cr("Running", {"entries": 4}), "is still Running: a live run is steered, not continued"),
        (cr("WaitingApproval", {"entries": 2}, approval={"id": "ap-1"}), "waiting for approval ap-1"),
        (cr("Succeeded"), "has no checkpoint journal"),
        (cr("Succeeded", {"entries": 0}), "has no checkpoint journal"),
        (cr("Skipped"), "has no checkpoint journal"),
    ],
)
def test_a_run_that_cannot_be_continued_says_why_and_what_to_do(found: Any, says: str) -> None:
    problem = refusal("r1", found)
    assert problem is not None and says in problem and "'r1'" in problem


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Cancelled"])
def test_a_finished_run_with_a_journal_can_be_continued(phase: str) -> None:
    assert refusal("r1", cr(phase, {"entries": 7, "resumes": 0})) is None


def run_doc(
    name: str, parent: str | None, created: str, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": name,
        "userId": "u",
        "parent": parent,
        "phase": "Succeeded",
        "createdAt": created,
        "usage": usage,
    }


def test_the_thread_lists_ancestors_then_the_run_then_continuations_with_each_ones_cost() -> None:
    root = run_doc("a", None, "1", {"inputTokens": 100, "outputTokens": 20, "costUSD": "0.0012"})
    middle = run_doc("b", "a", "2", {"inputTokens": 300, "outputTokens": 5, "costUSD": "0.003"})
    later, sooner = run_doc("d", "b", "4"), run_doc("c", "b", "3", {"inputTokens": 1})
    thread = thread_of([root], middle, [later, sooner])
    assert [(t.name, t.relation, t.parent) for t in thread] == [
        ("a", "ancestor", None),
        ("b", "self", "a"),
        ("c", "continuation", "b"),
        ("d", "continuation", "b"),
    ]
    assert [(t.tokens, t.costUSD) for t in thread] == [(120, "0.0012"), (305, "0.003"), (1, "0"), (0, "0")]


def test_a_continuation_never_comes_before_the_run_it_continues() -> None:
    # kubectl's run carries whole seconds, the API's microseconds: within one second, the
    # continuation of a continuation can carry the earlier time.
    run = run_doc("a", None, "2026-11-27T10:00:00.100000Z")
    child = run_doc("b", "a", "2026-11-27T10:00:00.500000Z")
    by_kubectl = run_doc("b-kubectl", "b", "2026-11-27T10:00:00.000000Z")
    sibling = run_doc("c", "a", "2026-11-27T10:00:01.000000Z")
    thread = thread_of([], run, [sibling, by_kubectl, child])
    assert [t.name for t in thread] == ["a", "b", "b-kubectl", "c"]


def test_relatives_are_the_ancestors_and_every_continuation_below_the_run() -> None:
    docs = {
        d["id"]: d
        for d in [
            run_doc("a", None, "1"),
            run_doc("b", "a", "2"),
            run_doc("c", "b", "3"),
            run_doc("c2", "b", "3b"),
            run_doc("e", "c", "5"),
            run_doc("side", "a", "6"),  # another branch of the thread: not b's
            run_doc("loop1", "loop2", "7"),
            run_doc("loop2", "loop1", "8"),
        ]
    }
    ancestors, later = relatives(docs["b"], docs.values())
    assert [d["id"] for d in ancestors] == ["a"]
    assert sorted(d["id"] for d in later) == ["c", "c2", "e"]
    # A cycle of parents (only a hand-written Execution could make one) ends.
    ancestors, later = relatives(docs["loop1"], docs.values())
    assert [d["id"] for d in ancestors] == ["loop2"] and later == []
    assert relatives(run_doc("z", None, "9"), docs.values()) == ([], [])


class Store:
    """The two reads FollowUps.thread makes, over one user's runs and another user's."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = {d["id"]: d for d in docs}
        self.reads: list[str] = []

    async def owned_execution(self, user_id: str, name: str) -> dict[str, Any] | None:
        self.reads.append(f"get {name}")
        doc = self.docs.get(name)
        return doc if doc is not None and doc["userId"] == user_id else None

    async def thread_members(self, user_id: str, root: str, limit: int) -> list[dict[str, Any]]:
        self.reads.append(f"query {root}")
        return [d for d in self.docs.values() if d["userId"] == user_id and d.get("root") == root][:limit]


def test_a_thread_is_one_query_and_one_read_of_the_callers_runs_only() -> None:
    store = Store(
        [
            run_doc("a", None, "1"),
            {**run_doc("b", "a", "2"), "root": "a"},
            {**run_doc("c", "b", "3"), "root": "a"},
            {**run_doc("x", "b", "4"), "root": "a", "userId": "someone else"},
        ]
    )
    follow = FollowUps(SimpleNamespace(store=store))  # type: ignore[arg-type]  # the reads it makes
    user = SimpleNamespace(id="u")
    thread = asyncio.run(follow.thread(user, store.docs["b"]))  # type: ignore[arg-type]
    assert [(t.name, t.relation) for t in thread] == [("a", "ancestor"), ("b", "self"), ("c", "continuation")]
    assert sorted(store.reads) == ["get a", "query a"]
    store.reads.clear()
    first = asyncio.run(follow.thread(user, store.docs["a"]))  # type: ignore[arg-type]
    assert [t.name for t in first] == ["a", "b", "c"] and store.reads == ["query a"]


def test_the_mirror_records_the_parent_and_the_view_carries_a_reported_checkpoint_only() -> None:
    follow_up = {
        "metadata": {"name": "r2", "creationTimestamp": "2026-11-27T00:00:00Z"},
        "spec": {"agentRef": {"name": "a"}, "parentRef": {"name": "r1"}, "input": "and Friday?"},
        "status": {"phase": "Succeeded", "checkpoint": {"entries": 6, "resumes": 1}},
    }
    doc = first_mirror(follow_up, {"userId": "u"})
    assert doc["parent"] == "r1" and doc["input"] == "and Friday?" and doc["userId"] == "u"
    assert first_mirror(cr("Running"), {"userId": "u"})["parent"] is None
    view = execution_view(follow_up)
    assert view["checkpoint"] == {"entries": 6, "resumes": 1}
    # A run without a checkpoint keeps the view (and so the stored hash) it had before.
    assert "checkpoint" not in execution_view(cr("Succeeded"))
    out = execution_out({**doc, **view})
    assert out.parent == "r1" and out.checkpoint == {"entries": 6, "resumes": 1}
    # A follow-up joins the thread of its parent: the parent's root, or the parent when it is the first.
    assert root_of({"id": "r1"}) == "r1" and root_of({"id": "r2", "root": "r1"}) == "r1"


def test_the_mirror_writes_the_crs_correlation_id_over_one_read_before_a_merge() -> None:
    """The watcher's write replaces the whole document: a correlation id it read before another writer
    merged the CR's (the scheduler route mirroring a kubectl Execution) must not come back."""
    from agentry_api.services.runs import RunService

    class Store:
        def __init__(self) -> None:
            self.doc: dict[str, Any] = {"id": "r1", "userId": "u", "agentId": "a"}
            self.doc["correlationId"] = "from-tick"

        async def execution(self, name: str) -> dict[str, Any]:
            return dict(self.doc)

        async def agent(self, name: str) -> dict[str, Any]:
            return {"id": "a", "userId": "u"}

        async def put_execution(self, doc: dict[str, Any], merge: bool = False) -> None:
            self.doc = {**self.doc, **doc} if merge else dict(doc)

    async def nothing(*_a: Any, **_k: Any) -> None:
        return None

    store = Store()
    quiet = SimpleNamespace(publish=nothing, requested=nothing, run_ended=nothing)
    runs = RunService(store, SimpleNamespace(), quiet, SimpleNamespace(), quiet)  # type: ignore[arg-type]
    made = {**cr("Running"), "metadata": {"name": "r1", "uid": "u1"}}
    made["spec"] = {**made["spec"], "correlationId": "c-1"}
    asyncio.run(runs.observe("MODIFIED", made))
    assert store.doc["correlationId"] == "c-1"
