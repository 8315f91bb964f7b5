"""The operator's in-memory State: its indexes follow every change of the Executions it caches."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_operator.handlers.state import State

pytestmark = pytest.mark.unit


def execution(name: str, agent: str, phase: str | None = None, ns: str = "ns") -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "uid": f"u-{name}"},
        "spec": {"agentRef": {"name": agent}},
        "status": {"phase": phase} if phase else {},
    }


def test_executions_of_an_agent_are_indexed_per_namespace() -> None:
    state = State()
    for body in (
        execution("a-1", "a"),
        execution("a-2", "a"),
        execution("b-1", "b"),
        execution("a-1", "a", ns="o"),
    ):
        state.seen_execution(body)
    assert [e["metadata"]["name"] for e in state.executions_of("ns", "a")] == ["a-1", "a-2"]
    assert [e["metadata"]["name"] for e in state.executions_of("o", "a")] == ["a-1"]
    state.forget(("ns", "a-1"))
    assert [e["metadata"]["name"] for e in state.executions_of("ns", "a")] == ["a-2"]
    state.forget(("ns", "a-2"))
    assert state.executions_of("ns", "a") == [] and ("ns", "a") not in state.by_agent


def test_waiting_approval_follows_the_phase_from_events_and_own_writes() -> None:
    state = State()
    state.seen_execution(execution("x", "a", "Running"))
    assert state.waiting_approval == set()
    state.seen_execution(execution("x", "a", "WaitingApproval"))
    assert state.waiting_approval == {("ns", "x")}
    state.wrote_status(("ns", "x"), {"phase": "Running"})  # resumed: our own write, before its event
    assert state.waiting_approval == set()
    state.wrote_status(("ns", "x"), {"phase": "WaitingApproval"})
    state.forget(("ns", "x"))
    assert state.waiting_approval == set()


def test_the_operator_context_is_one_typed_entry_of_the_memo() -> None:
    import kopf

    from agentry_operator.context import OperatorContext, context, find, store
    from agentry_operator.settings import Settings

    memo = kopf.Memo()
    assert find(memo) is None
    with pytest.raises(RuntimeError, match="start-up"):
        context(memo)
    ctx = OperatorContext(config=Settings(), client=object(), state=State())  # type: ignore[arg-type]
    store(memo, ctx)
    assert context(memo) is ctx and find(memo) is ctx


def test_resyncs_wait_for_a_quiet_listing_or_the_oldest_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("agentry_operator.handlers.state.time.monotonic", lambda: clock[0])
    state = State()
    state.resync_later(("ns", "a"))
    clock[0] += 1.5
    state.resync_later(("ns", "b"))
    state.resync_later(("ns", "a"))  # already waiting: keeps its first time
    assert state.take_resyncs(quiet=2, oldest=10) == []  # b came 0 s ago: the listing goes on
    clock[0] += 2
    assert state.take_resyncs(quiet=2, oldest=10) == [("ns", "a"), ("ns", "b")]
    assert state.take_resyncs(quiet=2, oldest=10) == []  # taken once
    for step in range(12):  # a steady trickle: taken once the oldest has waited 10 s
        state.resync_later(("ns", f"t{step}"))
        clock[0] += 1
        if taken := state.take_resyncs(quiet=2, oldest=10):
            break
    assert len(taken) == 10 and step == 9  # t0 added 10 s before
    state.resync_later(("ns", "gone"))
    state.forget(("ns", "gone"))
    clock[0] += 60
    assert state.take_resyncs(quiet=2, oldest=10) == []


def test_cached_executions_share_their_keys_and_short_strings() -> None:
    """Each watch event is parsed on its own; what the cache keeps shares equal strings (memory)."""
    import json

    def parsed(name: str) -> dict[str, Any]:
        body = execution(name, "summariser", "Running")
        body["status"]["conditions"] = [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T13:00:00Z"}
        ]
        body["spec"]["input"] = "x" * 200  # long strings are kept as they are
        return json.loads(json.dumps(body))  # a new string object for every key and value

    state = State()
    first, second = (state.seen_execution(parsed(n)) for n in ("run-1", "run-2"))
    assert first["status"] == parsed("run-1")["status"] and first["spec"] == parsed("run-1")["spec"]
    (one,), (two,) = first["status"]["conditions"], second["status"]["conditions"]
    for key in ("type", "lastTransitionTime"):
        assert next(k for k in one if k == key) is next(k for k in two if k == key)
        assert one[key] is two[key]
    assert first["spec"]["agentRef"]["name"] is second["spec"]["agentRef"]["name"]
    assert first["spec"]["input"] == second["spec"]["input"]


def test_agents_are_refreshed_only_once_their_namespaces_runs_are_listed_whole() -> None:
    """An Agent's totals and pruning read its Executions from the cache: read while a listing is
    halfway (a new leader's), runs not listed yet look absent, and a run archived by the last leader
    but not yet deleted would be archived again once its name left archived.names."""
    state = State()
    state.dirty_agents = {("a", "x"), ("b", "y")}
    assert state.take_dirty() == set()
    state.listed.add("a")
    assert state.take_dirty() == {("a", "x")}
    assert state.dirty_agents == {("b", "y")}  # kept for when "b" is listed
    state.listed.add(None)  # a watch of every namespace
    assert state.take_dirty() == {("b", "y")} and state.dirty_agents == set()
