"""`make dev --detach` with a provider key, and `agentry` against it: a guest signs in, applies the
sample agent, `runs submit hello --wait` exits 0 with the result of a run in a real pod, `logs -f`
follows another run live to its end, cluster mode (`--kubeconfig`) runs the sample the same way, and
a kubectl-created sample Execution succeeds. Then `up` is killed: a second `up` is refused while its
pods run on, and `down` cleans up after it (one `up` for all of it: each takes a minute or two)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentry_localcluster import node as n
from agentry_localcluster.cluster import lock_holder, pid_alive
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .test_dev_stack import REPO, _assert_nothing_left, _cli, _kubectl, _three_ports, _up_args, _wait_finished

pytestmark = pytest.mark.e2e

AGENTRY = Path(sys.executable).parent / "agentry"
USAGE = {"input_tokens": 40, "output_tokens": 9}
ANSWERS = (
    "An operator is a controller.",
    "A pod is a group of containers.",
    "A Job runs to completion.",
    "A CRD extends the API.",
)


def _node_free() -> None:
    """One local cluster per machine: wait for another test run's (or `make dev`'s) to end."""
    deadline = time.monotonic() + patient(1200)
    while (holder := lock_holder()) is not None:
        assert time.monotonic() < deadline, f"the local node stayed busy: {holder}"
        time.sleep(5)


def start_dev(
    workdir: Path, ports: tuple[int, int, int], llm: ScriptedLLM
) -> subprocess.CompletedProcess[str]:
    """`agentry-dev up --detach`; again when another test took the node while our images were checked."""
    for _ in range(5):
        _node_free()
        up = _cli(
            *_up_args(workdir, *ports),
            "--detach",
            timeout=1500,
            ANTHROPIC_API_KEY="sk-ant-dev-cli-0123456789",
            ANTHROPIC_BASE_URL=f"http://127.0.0.1:{llm.port}",
        )
        if "another local cluster is running" not in up.stdout:
            return up
    return up


def agentry(config: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {"AGENTRY_CONFIG": str(config), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    return subprocess.run(
        [str(AGENTRY), *args], capture_output=True, text=True, timeout=patient(timeout), env=env, cwd=REPO
    )


def _assert_down_cleans_up_after_a_killed_up(
    tmp_path: Path, workdir: Path, ports: tuple[int, int, int]
) -> None:
    pid = json.loads((n.NODE_RUN / "state.json").read_text())["pid"]
    again = _cli(*_up_args(tmp_path / "other", *_three_ports()))
    assert again.returncode == 1 and "a local cluster already runs" in again.stdout, again.stdout

    # A crash: the processes `up` started die with it (parent-death signal), but containers keep
    # running in their shims, with their mounts, network interfaces and iptables rules.
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + patient(30)
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert n.shim_pids(), "expected the pods' shims to outlive a killed `up`"

    down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "containerd shim" in down.stdout, down.stdout
    _assert_nothing_left(workdir, ports)


# Waiting for the machine's node (another run of the e2e tier may hold it) comes on top of the up.
@pytest.mark.timeout(2400)
def test_agentry_cli_against_make_dev(tmp_path: Path) -> None:
    _node_free()
    api, apiserver, firestore = _three_ports()
    workdir = tmp_path / "dev"
    config = tmp_path / "agentry.yaml"
    try:
        with ScriptedLLM(host="0.0.0.0") as llm:
            llm.script([{"text": text, "usage": USAGE} for text in ANSWERS])
            up = start_dev(workdir, (api, apiserver, firestore), llm)
            assert up.returncode == 0, up.stdout[-6000:] + up.stderr
            assert "running in the background" in up.stdout and "no LLM provider" not in up.stdout

            login = agentry(config, "login", "--url", f"http://127.0.0.1:{api}", "--guest")
            assert login.returncode == 0, login.stderr
            applied = agentry(config, "agents", "apply", "-f", "manifests/samples/agent-on-demand.yaml")
            assert applied.returncode == 0 and "created" in applied.stdout, applied.stderr

            done = agentry(
                config, "runs", "submit", "hello", "--input", "What is an operator?", "--wait", "-o", "json"
            )
            assert done.returncode == 0, done.stdout + done.stderr
            run = json.loads(done.stdout)
            assert run["phase"] == "Succeeded" and run["result"]["summary"] == ANSWERS[0], run

            started = agentry(config, "runs", "submit", "hello", "--input", "What is a pod?", "-o", "json")
            assert started.returncode == 0, started.stderr
            name = json.loads(started.stdout)["execution"]
            followed = agentry(config, "logs", name, "-f", "--timeout", "200")
            assert followed.returncode == 0, followed.stdout + followed.stderr
            assert "phase=Succeeded" in followed.stdout, followed.stdout
            assert (
                json.loads(agentry(config, "runs", "get", name, "-o", "json").stdout)["result"]["summary"]
                == ANSWERS[1]
            )

            kube = ("--kubeconfig", str(workdir / "kube" / "admin.kubeconfig"), "-n", "agentry-workloads")
            sample = agentry(config, *kube, "runs", "submit", "hello", "--wait", "-o", "json")
            assert sample.returncode == 0, sample.stdout + sample.stderr
            assert json.loads(sample.stdout)["status"]["result"]["summary"] == ANSWERS[2]

            kubeconfig = workdir / "kube" / "admin.kubeconfig"
            manifest = ("-n", "agentry-workloads", "create", "-f", "manifests/samples/execution.yaml")
            created = _kubectl(kubeconfig, *manifest, "-o", "name")
            assert created.returncode == 0, created.stderr
            status = _wait_finished(kubeconfig, created.stdout.strip().split("/")[-1])
            assert status["phase"] == "Succeeded", status
            assert status["result"]["summary"] == ANSWERS[3]
            assert len(llm.requests) == 4
        _assert_down_cleans_up_after_a_killed_up(tmp_path, workdir, (api, apiserver, firestore))
    finally:
        # `down` stops whichever local cluster holds the lock: only ever ours, never another test's.
        # After a failure between killing `up` and `down`, the lock's holder is gone but its pods are not.
        holder = lock_holder()
        ours = holder is not None and holder.get("workdir") == str(workdir)
        if ours or (holder is None and n.leftovers()):
            down = _cli("down")
            assert down.returncode == 0, down.stdout + down.stderr
