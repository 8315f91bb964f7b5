"""`agentry doctor`'s `warm pools` line: the pools' unclaimed pods and their memory requests, the idle
cost an admin pays for fast starts (agentry_common.pool.idle_cost; the real node: bench/run_pool.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agentry_cli import poolcheck
from agentry_common import constants as c
from agentry_common.pool import LABEL_POOL, idle_cost

pytestmark = pytest.mark.unit


def pod(pool: str | None, memory: str, phase: str = "Running", claimed: bool = False) -> dict[str, Any]:
    labels = {LABEL_POOL: pool} if pool else {}
    annotations = {c.ANNOTATION_EXECUTION: "run-1"} if claimed else {}
    return {
        "metadata": {"namespace": "w", "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"resources": {"requests": {"memory": memory}}}]},
        "status": {"phase": phase},
    }


def test_only_waiting_warm_pods_count() -> None:
    pods = [
        pod("default", "256Mi"),
        pod("default", "256Mi", phase="Pending"),  # starting: it costs already
        pod("big", "1Gi"),
        pod("default", "256Mi", claimed=True),  # a run's now
        pod("default", "256Mi", phase="Failed"),
        pod(None, "4Gi"),  # no pool's
    ]
    cost = idle_cost(pods)
    assert (cost.pods, cost.memory_bytes) == (3, (512 + 1024) * 2**20)
    assert cost.per_pool == (("w/big", 1), ("w/default", 2))
    assert (
        cost.describe()
        == "3 warm pods waiting (w/big: 1, w/default: 2), 1536 MiB of memory requested (512 MiB each)"
    )
    assert idle_cost([]).describe().startswith("no warm pods")


class Kube:
    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.asked: list[dict[str, str]] = []

    def get(self, path: str, params: dict[str, str]) -> Any:
        self.asked.append(params)
        pods = self.pods

        class Answer:
            def raise_for_status(self) -> None:
                pass

            def json(self) -> Any:
                return {"items": pods}

        assert path == "/api/v1/pods"
        return Answer()


def test_the_doctor_line_lists_the_pools_pods_by_label() -> None:
    kube = Kube([pod("default", "256Mi")])
    check = poolcheck._read(kube, time.perf_counter())  # type: ignore[arg-type]
    assert check.ok and check.detail.startswith("1 warm pod waiting (w/default: 1), 256 MiB")
    assert kube.asked == [{"labelSelector": LABEL_POOL}]


def test_an_unreadable_cluster_is_a_red_line_with_the_fix() -> None:
    check = poolcheck.check_pools("/no/such/kubeconfig")
    assert not check.ok and "list" in (check.hint or "")
