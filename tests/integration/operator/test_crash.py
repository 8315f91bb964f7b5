"""Crash test: the operator is SIGKILLed at random moments while 100 Executions are created and run.

After restarts, every Execution has exactly one Job and reaches a terminal phase.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from agentry_common.naming import job_name
from agentry_devenv.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.operator import own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

N = 100


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own: no other operator may act on what it creates."""
    with own_control_plane(tmp_path / "kube") as plane:
        yield plane


@pytest.fixture
def kube_client(own_plane: ControlPlane) -> Iterator[Client]:
    with plane_client(own_plane, "crash-test") as client:
        yield client


def test_exactly_one_job_per_execution_across_crashes(
    own_plane: ControlPlane, kube_client: Client, tmp_path: Path
) -> None:
    rng = random.Random(20261123)
    ns = make_namespace(kube_client, "crash")
    op = start_operator(own_plane, tmp_path)
    try:
        kube_client.create(
            Agent.from_dict(
                {
                    "metadata": {"name": "a", "namespace": ns},
                    "spec": {
                        "instructions": "x",
                        "model": {"name": "m"},
                        "historyLimits": {"succeeded": 1000, "failed": 1000},
                    },
                }
            )
        )

        def create_all() -> None:
            for i in range(N):
                kube_client.create(
                    Execution.from_dict(
                        {
                            "metadata": {"name": f"ex-{i}", "namespace": ns},
                            "spec": {"agentRef": {"name": "a"}},
                        }
                    )
                )
                time.sleep(rng.uniform(0, 0.02))

        creator = threading.Thread(target=create_all)
        creator.start()
        kills = 0
        while creator.is_alive() or kills < 3:
            time.sleep(rng.uniform(0.1, 0.8))
            op.proc.kill()
            kills += 1
            op.proc.start()
        creator.join()
        op.wait_healthy()

        executions = {e.metadata.name: e.metadata.uid for e in kube_client.list(Execution, namespace=ns)}
        assert len(executions) == N

        def all_jobs() -> list[Job]:
            jobs = list(kube_client.list(Job, namespace=ns))
            return jobs if len(jobs) >= N else []

        jobs = eventually(all_jobs, timeout=120, what=f"{N} Jobs")
        owners = Counter(j.metadata.ownerReferences[0].uid for j in jobs)
        assert len(jobs) == N and set(owners) == set(executions.values())
        assert max(owners.values()) == 1
        assert {j.metadata.name for j in jobs} == {job_name(n, u) for n, u in executions.items()}

        # Finish every run as a kubelet would, crashing the operator twice more on the way.
        pods = eventually(
            lambda: (p := list(kube_client.list(Pod, namespace=ns))) and len(p) >= N and p,
            timeout=120,
            what=f"{N} pods",
        )
        for i, pod in enumerate(pods):
            play_kubelet(
                kube_client,
                pod,
                "Succeeded",
                0,
                {"summary": "done", "usage": {"inputTokens": 1, "outputTokens": 1, "costUSD": "0.001"}},
            )
            if i in (N // 3, 2 * N // 3):
                op.proc.kill()
                op.proc.start()
        op.wait_healthy()

        def all_terminal() -> bool:
            phases = Counter((e.status or {}).get("phase") for e in kube_client.list(Execution, namespace=ns))
            return phases == Counter({"Succeeded": N})

        eventually(all_terminal, timeout=180, what="every Execution Succeeded")
        assert len(list(kube_client.list(Job, namespace=ns))) == N  # still one each
        eventually(
            lambda: (
                (kube_client.get(Agent, "a", namespace=ns).status or {}).get("totals", {}).get("succeeded")
                == N
            ),
            timeout=60,
            what="agent totals",
        )
    finally:
        op.proc.stop()
