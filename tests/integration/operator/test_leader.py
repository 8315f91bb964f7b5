"""Two operator replicas with leader election (issue 16, item 3), on a real control plane of their own.

The leader is SIGKILLed again and again while Executions are created and their pods finish; the
other replica takes the Lease over and carries on, and the killed one comes back as a candidate.
Afterwards: exactly one Job per Execution, every run Succeeded with its usage. How long each
takeover took (kill to new holder) is printed: the goal is under 15 s with the default 10 s Lease.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Pod

from agentry_common import constants as c
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.operator import OperatorProcess, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

RUNS = 100  # all kept: historyLimits 100 (the policy's maximum), so none is pruned
KILLS = 3
LEASE = "agentry-operator"
KEEP_ALL = {"succeeded": RUNS, "failed": RUNS}
REPORT = {
    "stopReason": "end_turn",
    "summary": "done",
    "truncated": False,
    "usage": {"inputTokens": 2, "outputTokens": 1, "costUSD": "0.001", "model": "m", "turns": 1},
}


def holder(client: Client, ns: str) -> str | None:
    try:
        lease = client.get(Lease, LEASE, namespace=ns)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    return lease.spec.holderIdentity if lease.spec else None


def replica_of(identity: str | None, replicas: dict[str, OperatorProcess]) -> str | None:
    return next((name for name in replicas if identity and identity.startswith(name + "_")), None)


def revive(replicas: dict[str, OperatorProcess]) -> None:
    """Start again a replica that exited, as its pod's kubelet would: a leader that cannot renew its
    Lease in time (a starved machine) stops and exits 1 by design, to come back as a candidate."""
    for name, replica in replicas.items():
        code = replica.proc.popen.poll() if replica.proc.popen is not None else None
        if code is not None:
            print(f"{name} exited {code} by itself: restarted")
            replica.proc.start()


def kill_leader(client: Client, ns: str, replicas: dict[str, OperatorProcess]) -> float:
    """SIGKILL the Lease holder; wait for the other replica to hold it; start the killed one again as
    a candidate. Returns the seconds from the kill to the new holder."""
    revive(replicas)
    leader = eventually(lambda: replica_of(holder(client, ns), replicas), 60, "a leader")
    proc = replicas[leader].proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.popen.wait(10)  # type: ignore[union-attr]
    killed = time.monotonic()

    def successor_of() -> str | None:
        revive({name: r for name, r in replicas.items() if name != leader})
        r = replica_of(holder(client, ns), replicas)
        return r if r not in (None, leader) else None

    successor = eventually(
        successor_of,
        60,
        f"a successor to {leader}",
    )
    took = time.monotonic() - killed
    print(f"leader {leader} killed: {successor} took over after {took:.1f} s")
    proc.start()
    replicas[leader].wait_healthy()
    return took


def finish_pods(client: Client, ns: str, done: set[str]) -> None:
    for pod in client.list(Pod, namespace=ns, labels={c.LABEL_MANAGED_BY: c.MANAGED_BY}):
        name = pod.metadata.name if pod.metadata else None
        if name and name not in done and (pod.status is None or pod.status.phase in (None, "Pending")):
            play_kubelet(client, pod, "Running")
            play_kubelet(client, pod, "Succeeded", 0, REPORT)
            done.add(name)


def status(client: Client, ns: str, name: str) -> dict[str, Any]:
    return dict(client.get(Execution, name, namespace=ns).status or {})


def test_killing_the_leader_again_and_again(private_plane: ControlPlane, tmp_path: Path) -> None:
    plane = private_plane
    with plane_client(plane, "leader-test") as client:
        ns = make_namespace(client, "ha")
        env = {"AGENTRY_LEADER_ELECTION": "true", "AGENTRY_LEASE_NAMESPACE": ns}
        replicas = {
            name: start_operator(plane, tmp_path / name, POD_NAME=name, **env) for name in ("op-a", "op-b")
        }
        try:
            run_under_kills(client, ns, replicas)
        finally:
            for replica in replicas.values():
                replica.proc.stop()


def run_under_kills(client: Client, ns: str, replicas: dict[str, OperatorProcess]) -> None:
    eventually(lambda: replica_of(holder(client, ns), replicas), 60, "a first leader")
    agent = {
        "metadata": {"name": "a", "namespace": ns},
        "spec": {"instructions": "x", "model": {"name": "m"}, "historyLimits": KEEP_ALL},
    }
    eventually(lambda: client.create(Agent.from_dict(agent)), 60, "the Agent admitted")
    names = [f"run-{i}" for i in range(RUNS)]

    def create_all() -> None:
        for name in names:
            spec = {"agentRef": {"name": "a"}}
            client.create(Execution.from_dict({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
            time.sleep(0.1)

    creator = threading.Thread(target=create_all)
    creator.start()
    finished: set[str] = set()
    takeovers = []
    for _ in range(KILLS):
        time.sleep(3)
        finish_pods(client, ns, finished)  # pods finish while leadership changes hands
        takeovers.append(kill_leader(client, ns, replicas))
    creator.join()

    def all_succeeded() -> bool:
        revive(replicas)
        finish_pods(client, ns, finished)
        return all(status(client, ns, n).get("phase") == "Succeeded" for n in names)

    eventually(all_succeeded, 180, "every run to succeed")
    jobs = Counter(
        (j.metadata.labels or {}).get(c.LABEL_EXECUTION) for j in client.list(Job, namespace=ns) if j.metadata
    )
    assert {n: jobs[n] for n in names} == dict.fromkeys(names, 1)
    for name in names:
        assert status(client, ns, name)["usage"]["inputTokens"] == 2, (name, status(client, ns, name))
    print(f"takeovers (s): {', '.join(f'{t:.1f}' for t in takeovers)}")
