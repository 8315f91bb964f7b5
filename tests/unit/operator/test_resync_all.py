"""The restart's resync: one listing per namespace, and one Execution's failure puts only that one
back in the queue (the API client is a listing stand-in; the crash tests run the real one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentry_operator.handlers import outcome
from agentry_operator.handlers.state import State

pytestmark = pytest.mark.unit


def execution(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"agentRef": {"name": "a"}},
        "status": {"phase": "Running", "jobName": f"job-{name}"},
    }


def job(name: str, ended: bool) -> dict[str, Any]:
    conditions = [{"type": "Complete", "status": "True"}] if ended else []
    return {"metadata": {"name": f"job-{name}", "namespace": "ns"}, "status": {"conditions": conditions}}


class Listing:
    """`list`: the given Jobs (and no Pods); counts the listings asked for."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs, self.listed = jobs, 0

    def list(self, resource: Any, **_: Any) -> AsyncIterator[dict[str, Any]]:
        self.listed += 1
        items = self.jobs if resource.__name__ == "Job" else []

        async def gen() -> AsyncIterator[dict[str, Any]]:
            for item in items:
                yield item

        return gen()


async def test_one_failure_puts_only_its_execution_back(monkeypatch: pytest.MonkeyPatch) -> None:
    state = State()
    for name in ("a", "b", "c"):
        state.seen_execution(execution(name))
    seen: list[str] = []

    async def on_job(client: Any, state: State, event: str, body: dict[str, Any]) -> None:
        seen.append(body["metadata"]["name"])
        if body["metadata"]["name"] == "job-a":
            raise RuntimeError("the status write was refused")

    async def on_pod(*_: Any) -> None:
        return None

    monkeypatch.setattr(outcome, "on_job", on_job)
    monkeypatch.setattr(outcome, "on_pod", on_pod)
    client = Listing([job("a", True), job("b", True), job("c", False)])
    await outcome.resync_all(client, state, [("ns", "a"), ("ns", "b"), ("ns", "c")])  # type: ignore[arg-type]
    assert seen == ["job-a", "job-b", "job-c"]
    assert set(state.resync_at) == {("ns", "a")}
    assert client.listed == 2  # the Jobs, then the Pods of the one still running: not one per run
