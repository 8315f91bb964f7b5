"""Two operator replicas with leader election (issue 16, item 3), on a real control plane of their own
(chaos tier: `make test-chaos`, part of `make test`).

500 Executions are created over about a minute and a half while the leader is SIGKILLed again and
again; the other replica takes the Lease over and carries on, and the killed one comes back as a
candidate. Pods finish whoever leads, also while nobody does. Afterwards, as in the crash tests:
every run terminal with its own result and usage in every terminal status ever written, exactly one
Job each, and the Agent's totals exact although all but a few runs were pruned. How long each
takeover took (kill to new holder) is printed: the goal is under 15 s with the default 10 s Lease.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from lightkube import Client

from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, start_operator
from tests.fixtures.servers import make_namespace, plane_client

from .crashkit import Kubelet, Recorder, admitted, check_outcome, crash_agent, create_executions, wait_for
from .leaderkit import holder, kill_leader, replica_of, revive

# The test's own deadlines (creations, kills, then SETTLE, each scaled by AGENTRY_TEST_PATIENCE) end
# before this one, so that a run left unfinished is named rather than cut short by pytest.
pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]

RUNS = 500
CREATE_SECONDS = 90.0  # the creations are spread over this long, kills all along
KILL_EVERY = (8.0, 16.0)  # seconds from a replica back to the next kill
SETTLE = 120.0  # every run terminal within this long after the last kill


def test_killing_the_leader_again_and_again(private_plane: ControlPlane, tmp_path: Path) -> None:
    plane = private_plane
    with plane_client(plane, "leader-test") as client:
        ns = make_namespace(client, "ha")
        env = {"AGENTRY_LEADER_ELECTION": "true", "AGENTRY_LEASE_NAMESPACE": ns}
        replicas = {
            name: start_operator(plane, tmp_path / name, POD_NAME=name, **env) for name in ("op-a", "op-b")
        }
        try:
            run_under_kills(plane, client, ns, replicas)
        finally:
            for replica in replicas.values():
                replica.proc.stop()


def run_under_kills(
    plane: ControlPlane, client: Client, ns: str, replicas: dict[str, OperatorProcess]
) -> None:
    eventually(lambda: replica_of(holder(client, ns), replicas), 60, "a first leader")
    names = [f"ex-{i}" for i in range(RUNS)]
    recorder = Recorder(plane, ns)
    kubelet = Kubelet(plane, ns, random.Random(11), run_seconds=(0.5, 10.0))
    rng = random.Random(2027)
    try:
        agent = crash_agent(ns, prune=True)  # 500 runs, a few kept: totals must survive pruning
        wait_for(lambda: admitted(client, agent), bool, 60, "the webhook admitting the Agent")
        gap = 2 * CREATE_SECONDS / RUNS
        creator = threading.Thread(target=create_executions, args=(client, ns, names, random.Random(5), gap))
        creator.start()
        takeovers = []
        while creator.is_alive():
            creator.join(rng.uniform(*KILL_EVERY))
            if creator.is_alive():
                takeovers.append(kill_leader(client, ns, replicas))
        print(f"{len(takeovers)} takeovers (s): {', '.join(f'{t:.1f}' for t in takeovers)}")
        print(f"{len(kubelet.finished)} of {RUNS} pods finished by the last kill")
        assert len(takeovers) >= 3  # the run went on under several leaders
        reviver = Reviver(replicas)  # a leader starved past its renewal exits by design: restarted
        try:
            check_outcome(client, ns, names, recorder, kubelet, prune=True, settle=SETTLE)
        finally:
            reviver.stop()
    finally:
        kubelet.stop()
        recorder.stop()


class Reviver:
    """Starts again, every 2 s, a replica that exited by itself (as its pod's kubelet would)."""

    def __init__(self, replicas: dict[str, OperatorProcess]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(replicas,), daemon=True)
        self._thread.start()

    def _loop(self, replicas: dict[str, OperatorProcess]) -> None:
        while not self._stop.wait(2.0):
            revive(replicas)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
