"""Faults the operator must ride out without a restart, on a real control plane of its own.

The API server is stopped for a minute while Executions are being started, then started again with
the same flags (same port, same etcd: what a crashed or upgraded kube-apiserver looks like to its
clients). The operator process must stay the same process, pick up its watches again, start every
Execution created before and after the outage with exactly one Job, and finish each with its usage.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from agentry_common import constants as c
from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.procs import Proc
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.operator import start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = [pytest.mark.integration, pytest.mark.long]

OUTAGE_SECONDS = 60
BEFORE, AFTER = 30, 10  # Executions created before the outage and after it
KEEP_ALL = {"succeeded": 100, "failed": 100}  # none pruned while the test looks at them
REPORT = {
    "stopReason": "end_turn",
    "summary": "done",
    "truncated": False,
    "usage": {"inputTokens": 3, "outputTokens": 2, "costUSD": "0.01", "model": "m", "turns": 1},
}


def restart_apiserver(plane: ControlPlane, down_seconds: float) -> None:
    """Stop kube-apiserver, wait, and start it again with its own argv on its own port."""
    old = next(p for p in plane.procs if p.name == "kube-apiserver")
    old.stop(grace=10)
    time.sleep(down_seconds)
    new = Proc(old.name, old.argv, old.log).start()
    plane.procs[plane.procs.index(old)] = new

    def ready() -> bool:
        return plane.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

    new.wait_ready(ready, 120, "ready again (/readyz)", ports=(plane.apiserver_port,))
    # kube-controller-manager exits when it cannot renew its leader lease (by design: its supervisor,
    # the kubelet of a static pod, starts it again). Here the test is that supervisor.
    for i, proc in enumerate(plane.procs):
        if proc.name == "kube-controller-manager" and not proc.alive():
            plane.procs[i] = Proc(proc.name, proc.argv, proc.log).start()


def create_executions(client: Client, ns: str, names: list[str]) -> None:
    for name in names:
        client.create(
            Execution.from_dict(
                {"metadata": {"name": name, "namespace": ns}, "spec": {"agentRef": {"name": "a"}}}
            )
        )


def jobs_per_execution(client: Client, ns: str) -> Counter[str]:
    jobs = client.list(Job, namespace=ns)
    return Counter((j.metadata.labels or {}).get(c.LABEL_EXECUTION, "") for j in jobs if j.metadata)


def test_a_minute_without_the_api_server(private_plane: ControlPlane, tmp_path: Path) -> None:
    plane = private_plane
    op = start_operator(plane, tmp_path / "operator")
    try:
        recovers(plane)
        # Nothing restarts it here: alive means the same process rode the outage out.
        assert op.proc.alive(), f"the operator died instead of recovering:\n{op.proc.output()[-3000:]!r}"
    finally:
        op.proc.stop()


def recovers(plane: ControlPlane) -> None:
    before = [f"before-{i}" for i in range(BEFORE)]
    after = [f"after-{i}" for i in range(AFTER)]
    with plane_client(plane, "faults-test") as client:
        ns = make_namespace(client, "faults")
        client.create(
            Agent.from_dict(
                {
                    "metadata": {"name": "a", "namespace": ns},
                    "spec": {"instructions": "x", "model": {"name": "m"}, "historyLimits": KEEP_ALL},
                }
            )
        )
        create_executions(client, ns, before)
        restart_apiserver(plane, OUTAGE_SECONDS)  # the operator is mid-way through the first batch
    with plane_client(plane, "faults-test") as client:
        create_executions(client, ns, after)
        names = before + after

        def all_started() -> Counter[str] | None:
            found = jobs_per_execution(client, ns)
            return found if set(found) >= set(names) else None

        counts = eventually(all_started, 120, "a Job for every Execution after the outage")
        assert {name: counts[name] for name in names} == dict.fromkeys(names, 1)
        for name in names:  # the kubelet's part; the Job controller may need a while to watch again
            job = eventually(
                lambda n=name: (client.get(Execution, n, namespace=ns).status or {}).get("jobName")
            )
            pod = eventually(lambda j=job: pods_of(client, ns, j), 120, f"a pod of {job}")[-1]
            play_kubelet(client, pod, "Running")
            play_kubelet(client, pod, "Succeeded", 0, REPORT)
        for name in names:
            st = eventually(lambda n=name: succeeded(client, ns, n), 60, f"{name} to succeed")
            assert st["usage"]["inputTokens"] == 3, (name, st)
        assert jobs_per_execution(client, ns) == counts  # still one each: nothing created twice


def succeeded(client: Client, ns: str, name: str) -> dict[str, Any] | None:
    status = dict(client.get(Execution, name, namespace=ns).status or {})
    return status if status.get("phase") == "Succeeded" else None


def pods_of(client: Client, ns: str, job: str) -> list[Pod]:
    return list(client.list(Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": job}))
