"""Run pods are bounded where the node is shared: a fork bomb (shell, and python escaping the tool's
process group) and a disk fill inside a run's tool end that run `Failed` with a reason that says so,
while another Agent's run on the same node succeeds and the API server keeps answering.

The bounds: the local kubelet's `podPidsLimit` (512), the runtime's PID guard (the container's PID 1
kills every process of the run at the first refused fork and reports `PIDLimitExceeded`), the run
pod's emptyDir sizeLimits and the LimitRange's default ephemeral-storage limit (the kubelet evicts;
the operator reports `StorageLimitExceeded`). Every loop the tools run is bounded, and so is every wait.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentry_cli.nodecheck import check_kubelets
from agentry_localcluster import node as n
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

PIDS_LIMIT = 512  # nodeconf.RUN_POD_BOUNDS
# dash: each process forks a pipeline of two into the background and exits; at the limit forks fail.
SHELL_BOMB = "bomb() { bomb | bomb & }; bomb; sleep 90; echo bomb-survived"
# Python: every child leaves the tool's process group (setsid: the tool's group kill misses it) and
# forks on; each process forks at most 400 times and lives at most 90 s.
PYTHON_BOMB = """
import os, time
def breed():
    for _ in range(400):
        try:
            if os.fork() == 0:
                os.setsid()
                breed()
                os._exit(0)
        except OSError:
            time.sleep(0.01)
    time.sleep(90)
breed()
print("bomb-survived")
"""
FILL_MIB = 1536  # over /workspace's sizeLimit (1Gi); bounded, then held while the kubelet looks
DISK_FILL = (
    f"dd if=/dev/zero of=/workspace/fill bs=1M count={FILL_MIB} 2>&1 | tail -1; "
    "i=0; while [ $i -lt 150 ]; do sleep 1; i=$((i+1)); done; echo fill-survived"
)
CALM = "sleep 15; echo calm-done"  # the other run's tool: busy while the hostile ones go off


@dataclass
class ApiProbe:
    """The API server's /readyz, asked every second in a thread while a test runs."""

    stack: NodeStack
    answers: list[tuple[float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            started = time.monotonic()
            try:
                got = self.stack.cluster.plane.kubectl("get", "--raw", "/readyz", check=False)
                ok = got.returncode == 0 and got.stdout.strip() == "ok"
            except subprocess.TimeoutExpired:
                ok = False
            self.answers.append((time.monotonic() - started, ok))

    def summary(self) -> str:
        worst = max((s for s, _ in self.answers), default=0.0)
        failed = sum(not ok for _, ok in self.answers)
        return f"{len(self.answers)} asks, {failed} failed, slowest {worst:.2f} s"


@pytest.fixture
def api_probe(node_stack: NodeStack) -> Iterator[ApiProbe]:
    probe = ApiProbe(node_stack)
    thread = threading.Thread(target=probe.run, daemon=True)
    thread.start()
    yield probe
    probe.stop.set()
    thread.join(timeout=30)
    # A test that failed halfway leaves runs going: none of them may call the shared model later.
    for ex in node_stack.items("executions"):
        if (ex.get("status") or {}).get("phase") not in ("Succeeded", "Failed", "Cancelled", "Skipped"):
            cancel = '{"spec": {"cancel": true}}'
            node_stack.kubectl(
                "patch", "execution", ex["metadata"]["name"], "--type=merge", "-p", cancel, check=False
            )


def _script(llm: ScriptedLLM, task: str, tool: str, tool_input: dict[str, Any]) -> None:
    """The run of `task` calls the tool once, then says it finished (if it gets that far)."""
    usage = {"input_tokens": 300, "output_tokens": 20}
    llm.script(
        [
            {"match": task, "tool_use": {"name": tool, "input": tool_input}, "usage": usage},
            {"match": task, "text": f"{task} finished.", "usage": usage},
        ]
    )


def _calm_run(stack: NodeStack, llm: ScriptedLLM) -> tuple[str, str]:
    """Another Agent's run (another user's, as far as the node is concerned), busy in its tool while
    the hostile runs go off. Unlabelled: owner labels bring in the run gate, which bounds runs per
    owner, not per node."""
    task = unique("calm-task")
    _script(llm, task, "shell", {"command": CALM})
    agent = unique("calm")
    stack.apply_agent(agent, agent_spec())
    return stack.run(agent, task), task


def _tool_called(stack: NodeStack, execution: str, timeout: float = 120) -> dt.datetime:
    """When the run's tool was called: its `tool_call` event in the pod's log, read while it lasts (an
    evicted pod's log goes with its containers)."""
    deadline = time.monotonic() + patient(timeout)
    while time.monotonic() < deadline:
        for pod in stack.items("pods", "-l", f"agentry.dev/execution={execution}"):
            logs = stack.kubectl("logs", pod["metadata"]["name"], "-c", "agent", check=False)
            calls = [e for e in map(_event, logs.splitlines()) if e.get("type") == "tool_call"]
            if calls:
                return _when(calls[0]["ts"])
        time.sleep(0.5)
    raise AssertionError(f"{execution}: no tool_call event after {timeout:.0f} s")


def _event(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def _ended_after_tool(stack: NodeStack, execution: str, pod: dict[str, Any]) -> float:
    """Seconds from the tool's call to the end of the run's container (second resolution)."""
    ended = _when(pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
    return (ended - _tool_called(stack, execution)).total_seconds()


def _when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _assert_calm_run_succeeded(stack: NodeStack, name: str, task: str) -> None:
    status = stack.wait_phase(name, ("Succeeded", "Failed"), timeout=240)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"]["summary"] == f"{task} finished.", status


def _assert_node_carried_on(stack: NodeStack, probe: ApiProbe) -> None:
    node = json.loads(stack.cluster.plane.kubectl("get", "node", n.NODE_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert conditions.get("PIDPressure") == "False" and conditions.get("DiskPressure") == "False", conditions
    assert probe.answers and all(ok for _, ok in probe.answers), probe.summary()
    print(f"[run-bounds] API server /readyz: {probe.summary()}")


def test_fork_bombs_end_their_runs_pid_limit_exceeded(
    node_stack: NodeStack, llm: ScriptedLLM, api_probe: ApiProbe
) -> None:
    calm, calm_task = _calm_run(node_stack, llm)
    runs: dict[str, str] = {}
    for tool, tool_input in (("shell", {"command": SHELL_BOMB}), ("python", {"code": PYTHON_BOMB})):
        task = unique(f"bomb-{tool}")
        _script(llm, task, tool, {**tool_input, "timeout_seconds": 100})
        agent = unique(f"bomb-{tool}")
        node_stack.apply_agent(agent, agent_spec(tools=["shell", "python"]))
        runs[tool] = node_stack.run(agent, task)

    for tool, name in runs.items():
        status = node_stack.wait_phase(name, ("Succeeded", "Failed"), timeout=240)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "PIDLimitExceeded"), status
        assert "podPidsLimit" in status["message"] and "refused" in status["message"], status
        (pod,) = node_stack.items("pods", "-l", f"agentry.dev/execution={name}")
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 15, terminated  # the runtime's own report, not a kill
        took = _ended_after_tool(node_stack, name, pod)
        print(
            f"[run-bounds] {tool} fork bomb: {status['reason']}, pod ended {took:.0f} s after its tool began"
        )
        print(f"[run-bounds]   {status['message']}")
    _assert_calm_run_succeeded(node_stack, calm, calm_task)
    _assert_node_carried_on(node_stack, api_probe)


def test_a_disk_fill_ends_its_run_storage_limit_exceeded(
    node_stack: NodeStack, llm: ScriptedLLM, api_probe: ApiProbe
) -> None:
    calm, calm_task = _calm_run(node_stack, llm)
    task = unique("fill-task")
    _script(llm, task, "shell", {"command": DISK_FILL, "timeout_seconds": 170})
    agent = unique("fill")
    node_stack.apply_agent(agent, agent_spec(timeoutSeconds=200))
    name = node_stack.run(agent, task)
    called = _tool_called(node_stack, name)

    status = node_stack.wait_phase(name, ("Succeeded", "Failed"), timeout=240)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "StorageLimitExceeded"), status
    assert 'EmptyDir volume "workspace" exceeds the limit "1Gi"' in status["message"], status
    (pod,) = node_stack.items("pods", "-l", f"agentry.dev/execution={name}")
    assert pod["status"]["reason"] == "Evicted", pod["status"]
    # The LimitRange's default gave the run's container a disk limit it did not ask for.
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits.get("ephemeral-storage") == "2Gi", limits
    # The evicted container's end, or (its state already gone with the eviction) the run's.
    state = pod["status"].get("containerStatuses", [{}])[0].get("state", {})
    ended = _when(state.get("terminated", {}).get("finishedAt") or status["completionTime"])
    took = (ended - called).total_seconds()
    print(f"[run-bounds] disk fill ({FILL_MIB} MiB): {status['reason']}, {took:.0f} s after its tool began")
    print(f"[run-bounds]   {status['message']}")
    _assert_calm_run_succeeded(node_stack, calm, calm_task)
    _assert_node_carried_on(node_stack, api_probe)


def test_doctor_reads_the_nodes_pid_limit_and_the_kubelet_bounds_logs(node_stack: NodeStack) -> None:
    check = check_kubelets(str(node_stack.cluster.plane.kubeconfig))
    assert check.ok, check
    assert check.detail == f"podPidsLimit {n.NODE_NAME}: {PIDS_LIMIT}", check
    raw = node_stack.cluster.plane.kubectl("get", "--raw", f"/api/v1/nodes/{n.NODE_NAME}/proxy/configz")
    config = json.loads(raw.stdout)["kubeletconfig"]
    assert (config["containerLogMaxSize"], config["containerLogMaxFiles"]) == ("10Mi", 3), config
    assert config["localStorageCapacityIsolation"] is True and config["volumeStatsAggPeriod"] == "10s"
