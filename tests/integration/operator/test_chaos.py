"""Chaos (`make test-chaos`, part of `make test`): the operator SIGKILLed every 10-30 s for five
minutes while 200 Executions are created and run, on a real control plane; pods keep finishing while
it is down, some runs last across several kills.

Afterwards every run is terminal within two minutes of the last kill, with exactly one Job each,
its own result and usage, and the Agent's totals exact. AGENTRY_CHAOS_SECONDS shortens the kill
period for a quick local try.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client

from agentry_localcluster.kube import ControlPlane
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

from .crashkit import Kubelet, Recorder, admitted, check_outcome, crash_agent, create_executions, wait_for

# The test's own deadlines (creations, kills, then SETTLE, each scaled by AGENTRY_TEST_PATIENCE) end
# before this one, so that a run left unfinished is named rather than cut short by pytest.
pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(1000)]

RUNS = 200
KILL_EVERY = (10.0, 30.0)  # seconds between kills
SETTLE = 120.0  # every run terminal within this long after the last kill


@pytest.fixture
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("chaos") / "kube") as plane:
        yield plane


def kill_for(op: OperatorProcess, rng: random.Random, seconds: float) -> int:
    """SIGKILL the operator every 10-30 s for `seconds`; down for up to 3 s each time."""
    kills, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(rng.uniform(*KILL_EVERY), max(0.0, end - time.monotonic())))
        op.proc.kill()
        kills += 1
        time.sleep(rng.uniform(0, 3.0))
        op.proc.start()
    return kills


def test_five_minutes_of_kills_lose_and_double_nothing(own_plane: ControlPlane, tmp_path: Path) -> None:
    seconds = float(os.environ.get("AGENTRY_CHAOS_SECONDS", "300"))
    rng = random.Random(2026)
    with plane_client(own_plane, "chaos-test") as client:
        run_chaos(own_plane, client, tmp_path, rng, seconds)


def run_chaos(
    plane: ControlPlane, client: Client, tmp_path: Path, rng: random.Random, seconds: float
) -> None:
    ns = make_namespace(client, "chaos")
    names = [f"ex-{i}" for i in range(RUNS)]
    recorder = Recorder(plane, ns)
    # Runs of 1-20 s: many are in flight across a kill, some finish while the operator is down.
    kubelet = Kubelet(plane, ns, random.Random(7), run_seconds=(1.0, 20.0))
    op = start_operator(plane, tmp_path)
    try:
        agent = crash_agent(ns, prune=True)  # 200 runs, 4 kept: totals must survive pruning
        wait_for(lambda: admitted(client, agent), bool, 60, "the webhook admitting the Agent")
        # Spread the creations over most of the kill period.
        gap = 2 * 0.8 * seconds / RUNS
        creator = threading.Thread(target=create_executions, args=(client, ns, names, random.Random(3), gap))
        creator.start()
        kills = kill_for(op, rng, seconds)
        creator.join()
        print(f"chaos: {kills} kills in {seconds:.0f} s, {len(kubelet.finished)} of {RUNS} pods finished")
        check_outcome(client, ns, names, recorder, kubelet, prune=True, settle=SETTLE)
    finally:
        kubelet.stop()
        recorder.stop()
        op.proc.stop()
