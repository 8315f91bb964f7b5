"""The API's dry run of an Agent: a transient failure is tried again before the write is stored
unchecked, so a spec the cluster refuses is a 422 now, not a sync error later (cluster.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lightkube import ApiError

from agentry_api import cluster as cluster_mod
from agentry_api.cluster import Cluster, ClusterUnavailable

pytestmark = pytest.mark.unit

MANIFEST = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "a", "namespace": "ns"},
    "spec": {"instructions": "x"},
}


def error(code: int) -> ApiError:
    return ApiError(response=httpx.Response(code, json={"code": code, "message": f"answer {code}"}))


class Client:
    """Answers each apply with the next of `answers` (an exception is raised)."""

    def __init__(self, *answers: BaseException | dict[str, Any]) -> None:
        self.answers = list(answers)
        self.dry_runs: list[bool] = []

    async def apply(self, obj: Any, force: bool = False, dry_run: bool = False) -> dict[str, Any]:
        self.dry_runs.append(dry_run)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def cluster(client: Client) -> Cluster:
    made = Cluster.__new__(Cluster)
    made.namespace, made.client = "ns", client  # type: ignore[assignment]
    return made


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same schedule a hundred times faster: pauses of 2.5, 5, 10 ms within 30 ms."""
    monkeypatch.setattr(cluster_mod, "DRY_RUN_FIRST_PAUSE", 0.0025)
    monkeypatch.setattr(cluster_mod, "DRY_RUN_RETRY_SECONDS", 0.03)


async def test_a_transient_failure_is_tried_again_and_the_refusal_reaches_the_caller() -> None:
    client = Client(error(500), error(429), error(422))
    with pytest.raises(ApiError) as refused:
        await cluster(client).apply_agent(MANIFEST, dry_run=True)
    assert refused.value.status.code == 422 and client.dry_runs == [True, True, True]


async def test_an_unavailable_cluster_is_reported_after_the_bounded_retries() -> None:
    client = Client(*[error(503)] * 10)
    with pytest.raises(ClusterUnavailable):
        await cluster(client).apply_agent(MANIFEST, dry_run=True)
    # Pauses of 2.5 + 5 + 10 ms fit in the 30 ms, a fourth of 20 ms would not (fewer tries when the
    # machine is slow: the bound is on time).
    assert 2 <= len(client.dry_runs) <= 4


async def test_a_real_write_is_not_retried_here_the_syncer_does_that() -> None:
    client = Client(error(500), {"kind": "Agent"})
    with pytest.raises(ClusterUnavailable):
        await cluster(client).apply_agent(MANIFEST)
    assert client.dry_runs == [False]
