"""The run gate (docs/security.md, "Who may start a run"): its rules, its counting under concurrent
starts, its book of the day, and the owner label on every run the operator or the tick creates."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from agentry_common import constants as c
from agentry_common.conditions import Reason
from agentry_common.models import Phase
from agentry_operator.builders.cronjob import build_cronjob
from agentry_operator.builders.run_gate import Limits, limits_of, owner_held, quota_held
from agentry_operator.handlers.run_gate import book_name
from agentry_operator.handlers.state import State
from agentry_operator.settings import Settings
from agentry_operator.tick import ENV_TICK_OWNER, build_execution
from agentry_operator.webhook import owner_label_errors, start_errors
from agentry_operator.workflows import graph
from agentry_operator.workflows.schedule import build_run
from agentry_operator.workflows.step import build_execution as build_step

pytestmark = pytest.mark.unit

API = "system:serviceaccount:agentry:agentry-api"
CONFIG = Settings(
    owner_label_writers=[API],
    owner_label_trust_masters=False,
    quota_concurrent_runs=2,
    quota_runs_per_day=3,
    guest_quota_concurrent_runs=1,
    guest_quota_runs_per_day=1,
    state_namespace="agentry",
)
MALLORY = {"username": "mallory", "groups": ["system:authenticated"]}
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def agent(name: str = "a", owner: str = "", guest: bool = False) -> dict[str, Any]:
    labels = {c.LABEL_OWNER: owner} if owner else {}
    if guest:
        labels[c.LABEL_OWNER_KIND] = c.OWNER_KIND_GUEST
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels}
    return {"apiVersion": c.API_VERSION, "kind": "Agent", "metadata": meta, "spec": {"instructions": "x"}}


def run(name: str, owner: str = "", agent_name: str = "a", **status: Any) -> dict[str, Any]:
    labels = {c.LABEL_OWNER: owner} if owner else {}
    return {
        "apiVersion": c.API_VERSION,
        "kind": "Execution",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels},
        "spec": {"agentRef": {"name": agent_name}},
        "status": status,
    }


# -- the rules ------------------------------------------------------------------------------------


def test_a_run_belongs_to_its_agents_owner() -> None:
    assert owner_held(run("r", owner="alice"), agent(owner="alice")) is None
    assert owner_held(run("r"), agent()) is None  # kubectl users' own Agents
    assert owner_held(run("r", owner="admin"), agent()) is None  # run by the API for its import owner
    for execution, target, field in [
        (run("r"), agent(owner="alice"), "spec.agentRef.name"),  # kubectl run of an owned Agent
        (run("r", owner="bob"), agent(owner="alice"), f"metadata.labels.{c.LABEL_OWNER}"),
    ]:
        held = owner_held(execution, target)
        assert held is not None and held.phase == Phase.FAILED and held.reason == Reason.OWNER_MISMATCH
        assert held.message.startswith(field), held.message


def test_quotas_hold_a_run_or_end_it() -> None:
    limits = Limits(concurrent_runs=2, runs_per_day=3)
    assert quota_held(1, 2, limits, NOW) is None
    waiting = quota_held(2, 0, limits, NOW)
    assert waiting is not None and (waiting.phase, waiting.reason) == (
        Phase.PENDING,
        Reason.CONCURRENT_RUNS_QUOTA,
    )
    assert "concurrent_runs: 2" in waiting.message
    ended = quota_held(0, 3, limits, NOW)
    assert ended is not None and (ended.phase, ended.reason) == (Phase.FAILED, Reason.RUNS_PER_DAY_QUOTA)
    assert "2026-11-26" in ended.message and "runs_per_day: 3" in ended.message
    assert quota_held(50, 5000, Limits(0, 0), NOW) is None  # 0: no limit


def test_guests_get_the_guests_quotas() -> None:
    assert limits_of(agent(owner="g"), CONFIG) == Limits(2, 3)
    assert limits_of(agent(owner="g", guest=True), CONFIG) == Limits(1, 1)


def test_the_webhook_refuses_a_start_for_another_owner() -> None:
    owned = agent(owner="alice")
    (error,) = start_errors(run("r", agent_name="a"), owned, MALLORY, CONFIG)
    assert error.startswith("spec.agentRef.name:") and "mallory may not" in error
    assert start_errors(run("r", owner="alice"), owned, {"username": API}, CONFIG) == []
    (cross,) = start_errors(run("r", owner="bob"), owned, {"username": API}, CONFIG)
    assert cross.startswith(f"metadata.labels.{c.LABEL_OWNER}")
    assert start_errors(run("r"), agent(), MALLORY, CONFIG) == []  # their own Agent
    assert start_errors(run("r"), None, MALLORY, CONFIG) == []  # not there yet: the gate decides


def test_owner_kind_and_every_kind_are_guarded() -> None:
    guest = agent(owner="g", guest=True)
    for kind in ("Agent", "Execution", "Workflow", "WorkflowRun"):
        errors = owner_label_errors(kind, guest, None, MALLORY, CONFIG)
        assert {e.split(":")[0] for e in errors} == {
            f"metadata.labels.{c.LABEL_OWNER}",
            f"metadata.labels.{c.LABEL_OWNER_KIND}",
        }
        assert owner_label_errors(kind, guest, None, {"username": API}, CONFIG) == []


def test_workflow_steps_name_only_their_owners_agents() -> None:
    spec = {
        "steps": [{"name": "s1", "agentRef": {"name": "mine"}}, {"name": "s2", "agentRef": {"name": "x"}}]
    }
    assert graph.owner_errors(spec, "alice", {"mine": "alice", "x": "alice"}) == []
    (error,) = graph.owner_errors(spec, "alice", {"mine": "alice", "x": "bob"})
    assert error.startswith("spec.steps[1].agentRef.name:")
    assert graph.owner_errors(spec, "", {"mine": "", "x": None}) == []  # absent: agent_errors says so
    assert graph.owner_errors(spec, "", {"mine": "alice", "x": ""})  # a kubectl Workflow, an owned Agent
    assert graph.owner_errors(spec, "alice", {"mine": "alice", "x": ""}) == []  # a kubectl Agent


# -- every run the operator or the tick creates carries its owner ------------------------------------


def test_operator_made_runs_carry_the_owner_label() -> None:
    scheduled = build_execution("a", "ns", NOW, owner_label="alice")
    assert scheduled["metadata"]["labels"][c.LABEL_OWNER] == "alice"
    assert c.LABEL_OWNER not in build_execution("a", "ns", NOW)["metadata"]["labels"]
    workflow = {"metadata": {"name": "wf", "namespace": "ns", "uid": "u", "labels": {c.LABEL_OWNER: "alice"}}}
    wrun = build_run({**workflow, "spec": {"schedule": {"cron": "* * * * *"}}}, NOW)
    assert wrun["metadata"]["labels"][c.LABEL_OWNER] == "alice"
    wrun["metadata"]["uid"] = "run-uid"
    step = build_step(wrun, {"name": "s", "agentRef": {"name": "a"}}, 1, "")
    assert step["metadata"]["labels"][c.LABEL_OWNER] == "alice"


def test_the_tick_gets_its_agents_owner() -> None:
    owned = {**agent(owner="alice"), "spec": {"instructions": "x", "schedule": {"cron": "0 8 * * 1"}}}
    cron = build_cronjob(owned, CONFIG)
    env = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": ENV_TICK_OWNER, "value": "alice"} in env


# -- counting -------------------------------------------------------------------------------------


class Books:
    """The ConfigMaps the gate writes, as an API server keeps them (resourceVersion, 409), with an
    await in every call so that concurrent starts interleave."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.lists = 0
        self.listed: list[str] = []

    def _conflict(self) -> ApiError:
        return ApiError(response=None, status=Status(code=409, message="conflict"))  # type: ignore[arg-type]

    async def get(self, res: Any, name: str, namespace: str) -> Any:
        await asyncio.sleep(0)
        found = self.maps.get(name)
        if found is None:
            raise ApiError(response=None, status=Status(code=404, message="nf"))  # type: ignore[arg-type]
        return found

    async def create(self, obj: Any) -> Any:
        await asyncio.sleep(0)
        if obj.metadata.name in self.maps:
            raise self._conflict()
        return self._store(obj.metadata.name, dict(obj.data))

    async def patch(self, res: Any, name: str, body: dict[str, Any], **_: Any) -> Any:
        await asyncio.sleep(0)
        if self.maps[name]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise self._conflict()
        return self._store(name, body["data"])

    def _store(self, name: str, data: dict[str, str]) -> Any:
        self.version += 1
        self.maps[name] = {"metadata": {"name": name, "resourceVersion": str(self.version)}, "data": data}
        return _Obj(str(self.version))

    async def list(self, *_: Any, namespace: str, **__: Any) -> AsyncIterator[Any]:
        self.lists += 1
        self.listed.append(namespace)
        for item in ():
            yield item


class _Obj:
    def __init__(self, version: str) -> None:
        self.metadata = type("M", (), {"resourceVersion": version})()


async def start_all(state: State, books: Books, owned: dict[str, Any], names: list[str]) -> list[Any]:
    bodies = [state.seen_execution(run(n, owner=owned["metadata"]["labels"][c.LABEL_OWNER])) for n in names]
    return await asyncio.gather(*(state.gate.admit(books, CONFIG, state, b, owned) for b in bodies))  # type: ignore[arg-type]


async def test_concurrent_starts_never_both_take_the_last_slot() -> None:
    state, books, owned = State(), Books(), agent(owner="alice")
    verdicts = await start_all(state, books, owned, [f"r{i}" for i in range(6)])
    admitted = [v for v in verdicts if v is None]
    assert len(admitted) == 2  # quota_concurrent_runs
    assert {v.reason for v in verdicts if v is not None} == {Reason.CONCURRENT_RUNS_QUOTA}
    assert books.lists == 1  # the owned runs were listed once, before the first count
    book = books.maps[book_name("alice")]["data"]
    assert book["day"] == dt.datetime.now(dt.UTC).strftime("%Y-%m-%d") and len(book["admitted"].split()) == 2
    assert state.quota_waiting["alice"] == {("ns", f"r{i}") for i in range(6)} - {
        ("ns", b["metadata"]["name"])
        for b, v in zip([state.executions[("ns", f"r{i}")] for i in range(6)], verdicts, strict=True)
        if v is None
    }


async def test_an_end_frees_the_slot_and_wakes_the_waiting_runs() -> None:
    state, books, owned = State(), Books(), agent(owner="alice")
    verdicts = await start_all(state, books, owned, ["r0", "r1", "r2"])
    assert verdicts[2] is not None
    assert ("ns", "r2") not in state.queue._queued
    state.seen_execution(run("r0", owner="alice", phase="Succeeded"))
    assert state.queue._queued.get(("ns", "r2")) is True  # woken at once, as a retry
    assert await state.gate.admit(books, CONFIG, state, state.executions[("ns", "r2")], owned) is None  # type: ignore[arg-type]
    # Admitted again (a retry, or after a crash): the same run never takes a second slot or day count.
    assert await state.gate.admit(books, CONFIG, state, state.executions[("ns", "r2")], owned) is None  # type: ignore[arg-type]
    assert len(books.maps[book_name("alice")]["data"]["admitted"].split()) == 3


async def test_the_day_is_counted_from_the_book_whoever_wrote_it() -> None:
    state, books, owned = State(), Books(), agent(owner="alice")
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    # Written by an earlier leader: three runs today, all ended (so no slot is held).
    books._store(book_name("alice"), {"owner": "alice", "day": today, "admitted": "x y z"})
    (held,) = await start_all(state, books, owned, ["late"])
    assert held is not None and held.reason == Reason.RUNS_PER_DAY_QUOTA and held.phase == Phase.FAILED
    # Yesterday's book does not count today.
    books._store(book_name("bob"), {"owner": "bob", "day": "2000-01-01", "admitted": "x y z"})
    assert await start_all(state, books, agent(owner="bob"), ["fresh"]) == [None]


async def test_a_book_changed_underneath_is_merged_not_overwritten() -> None:
    state, books, owned = State(), Books(), agent(owner="alice")
    assert await start_all(state, books, owned, ["r0"]) == [None]
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    admitted = books.maps[book_name("alice")]["data"]["admitted"]
    books._store(book_name("alice"), {"owner": "alice", "day": today, "admitted": f"{admitted} other"})
    assert await start_all(state, books, owned, ["r1"]) == [None]
    assert set(books.maps[book_name("alice")]["data"]["admitted"].split()) == {"uid-r0", "uid-r1", "other"}


async def test_runs_without_an_owner_are_not_counted() -> None:
    state, books = State(), Books()
    body = state.seen_execution(run("r"))
    assert await state.gate.admit(books, CONFIG, state, body, agent()) is None  # type: ignore[arg-type]
    assert books.maps == {} and books.lists == 0


def test_the_policy_is_applied_again_at_the_start(tmp_path: Any) -> None:
    """A policy tightened after the Agent was written, and a run's priority, refuse the run by field."""
    policy = tmp_path / "policy.json"
    policy.write_text('{"maxTimeoutSeconds": 600, "priority": {"max": 5}}')
    config = Settings(policy_file=str(policy))
    long = {**agent(owner="alice"), "spec": {"instructions": "x", "timeoutSeconds": 1200}}
    held = State().gate.policy_held(config, run("r", owner="alice"), long)
    assert held is not None and (held.phase, held.reason) == (Phase.FAILED, Reason.POLICY_VIOLATION)
    assert "spec.timeoutSeconds" in held.message and "600" in held.message
    urgent = {**run("r"), "spec": {"agentRef": {"name": "a"}, "priority": 7}}
    short = {**agent(), "spec": {"instructions": "x", "timeoutSeconds": 300}}
    held = State().gate.policy_held(config, urgent, short)
    assert held is not None and "spec.priority" in held.message and "timeoutSeconds" not in held.message
    assert State().gate.policy_held(config, run("r"), short) is None


async def test_the_owned_runs_are_listed_where_the_operator_watches() -> None:
    """A namespaced install may not list cluster-wide: the listing stays in the watched namespaces."""
    state, books, owned = State(), Books(), agent(owner="alice")
    scoped = CONFIG.model_copy(update={"watch_namespaces": ["ns", "other"]})
    body = state.seen_execution(run("r", owner="alice"))
    assert await state.gate.admit(books, scoped, state, body, owned) is None  # type: ignore[arg-type]
    assert books.listed == ["ns", "other"]
    everywhere = State()
    await everywhere.gate.admit(
        books, CONFIG, everywhere, everywhere.seen_execution(run("r2", owner="b")), owned
    )  # type: ignore[arg-type]
    assert books.listed[-1] == "*"
