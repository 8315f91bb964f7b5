"""Crash test: the operator is SIGKILLed on a random schedule while Executions are created and their
pods finish (also while the operator is down), on a real control plane.

After the restarts: every Execution has exactly one Job, is Succeeded with the result and usage its
own pod reported (every terminal status ever written carries them), and the Agent's totals of
tokens and cost are exact: each run counted once, with and without history pruning.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lightkube import Client

from agentry_localcluster.kube import ControlPlane
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

from .crashkit import Kubelet, Recorder, admitted, check_outcome, crash_agent, create_executions, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.long]

N = 60  # Executions per scenario


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this module's own: no other operator may act on what it creates (each
    scenario has its own namespace and its own operator)."""
    with own_control_plane(tmp_path_factory.mktemp("crash") / "kube") as plane:
        yield plane


@pytest.fixture
def kube_client(own_plane: ControlPlane) -> Iterator[Client]:
    with plane_client(own_plane, "crash-test") as client:
        yield client


def crash_while_running(
    op: OperatorProcess, rng: random.Random, busy: Callable[[], bool], min_kills: int
) -> int:
    """SIGKILL the operator every few seconds while `busy()`: mostly a moment after it is up (amid the
    work its restart found), sometimes while it is still starting. It stays down a random while, in
    which pods keep finishing. Returns the number of kills."""
    kills = 0
    while busy() or kills < min_kills:
        if rng.random() < 0.8:
            op.wait_healthy()
            time.sleep(rng.uniform(0.2, 2.5))
        else:
            time.sleep(rng.uniform(0.5, 3.0))
        op.proc.kill()
        kills += 1
        time.sleep(rng.uniform(0, 2.0))
        op.proc.start()
    op.wait_healthy()
    return kills


@pytest.mark.parametrize(
    ("seed", "prune"),
    [(11, False), (23, False), (37, False), (41, True), (59, True)],
    ids=["seed11", "seed23", "seed37", "seed41-pruned", "seed59-pruned"],
)
def test_crashes_keep_one_job_and_every_runs_usage(
    own_plane: ControlPlane, kube_client: Client, tmp_path: Path, seed: int, prune: bool
) -> None:
    rng = random.Random(seed)
    ns = make_namespace(kube_client, "crash")
    names = [f"ex-{i}" for i in range(N)]
    recorder = Recorder(own_plane, ns)
    kubelet = Kubelet(own_plane, ns, random.Random(seed + 1))
    op = start_operator(own_plane, tmp_path)
    try:
        agent = crash_agent(ns, prune)
        wait_for(lambda: admitted(kube_client, agent), bool, 60, "the webhook admitting the Agent")
        creator = threading.Thread(
            target=create_executions, args=(kube_client, ns, names, random.Random(seed + 2), 0.3)
        )
        creator.start()
        kills = crash_while_running(
            op, rng, lambda: creator.is_alive() or len(kubelet.finished) < N, min_kills=5
        )
        creator.join()
        print(f"seed {seed}: {kills} kills")
        check_outcome(kube_client, ns, names, recorder, kubelet, prune, settle=180)
    finally:
        kubelet.stop()
        recorder.stop()
        op.proc.stop()
