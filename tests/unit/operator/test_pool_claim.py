"""The take of a warm Job (pool/claim.py, step 2) against a store that enforces resourceVersion
preconditions as the API server does: two claims never take one pod, a status write of the Job
controller between read and take is no lost claim, and a repeated take of one's own is no conflict."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx2
import pytest
from lightkube import ApiError

from agentry_common import constants as c
from agentry_operator import kube
from agentry_operator.builders.job import build_job
from agentry_operator.pool.claim import Step, _take
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

AGENT: dict[str, Any] = {
    "metadata": {"name": "a", "namespace": "w"},
    "spec": {"instructions": "x", "model": {"name": "m"}},
}


def run_job(name: str) -> dict[str, Any]:
    execution = {
        "metadata": {"name": name, "namespace": "w", "uid": f"uid-{name}"},
        "spec": {"agentRef": {"name": "a"}},
    }
    return build_job(execution, AGENT, "corr", Settings())


class Store:
    """One warm Job; a merge patch carrying a stale resourceVersion is a 409."""

    def __init__(self) -> None:
        self.job: dict[str, Any] = {
            "metadata": {"name": "pool-x-1", "namespace": "w", "resourceVersion": "1"},
            "status": {"startTime": "2026-01-01T00:00:00Z"},
        }

    def bump(self) -> None:
        meta = self.job["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    async def get(self, client: object, res: object, name: str, ns: str) -> dict[str, Any]:
        return copy.deepcopy(self.job)

    async def patch(self, client: object, res: object, name: str, ns: str, body: dict[str, Any]) -> None:
        if body["metadata"]["resourceVersion"] != self.job["metadata"]["resourceVersion"]:
            raise ApiError(response=httpx2.Response(409, json={"code": 409, "message": "conflict"}))
        meta = self.job["metadata"]
        meta.setdefault("annotations", {}).update(body["metadata"]["annotations"])
        self.bump()


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    found = Store()
    monkeypatch.setattr(kube, "get_or_none", found.get)
    monkeypatch.setattr(kube, "patch_merge", found.patch)
    return found


def claimed_by(store: Store) -> str:
    return str(store.job["metadata"].get("annotations", {}).get(c.ANNOTATION_EXECUTION, ""))


def test_two_claims_of_one_warm_job_take_it_once(store: Store) -> None:
    async def both() -> list[Step]:
        seen = [copy.deepcopy(store.job), copy.deepcopy(store.job)]  # both read version 1
        return [await _take(None, run_job("r1"), seen[0]), await _take(None, run_job("r2"), seen[1])]  # type: ignore[arg-type]

    assert asyncio.run(both()) == [Step.CLAIMED, Step.TAKEN]
    assert claimed_by(store) == "r1"


def test_a_status_write_between_read_and_take_is_no_lost_claim(store: Store) -> None:
    seen = copy.deepcopy(store.job)
    store.bump()  # the Job controller wrote its status meanwhile
    assert asyncio.run(_take(None, run_job("r1"), seen)) == Step.CLAIMED  # type: ignore[arg-type]
    assert claimed_by(store) == "r1"


def test_a_take_repeated_after_it_landed_is_the_claims_own(store: Store) -> None:
    seen = copy.deepcopy(store.job)
    assert asyncio.run(_take(None, run_job("r1"), seen)) == Step.CLAIMED  # type: ignore[arg-type]
    assert asyncio.run(_take(None, run_job("r1"), seen)) == Step.CLAIMED  # type: ignore[arg-type]


def test_an_ended_warm_job_is_gone(store: Store) -> None:
    store.job["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    assert asyncio.run(_take(None, run_job("r1"), copy.deepcopy(store.job))) == Step.GONE  # type: ignore[arg-type]
