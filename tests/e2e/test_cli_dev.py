"""`agentry` against `make dev` (issue 19's done-when): a guest signs in, applies the sample agent,
`runs submit hello --wait` exits 0 with the result of a run in a real pod, `logs -f` follows another
run live to its end, and cluster mode (`--kubeconfig`) runs the kubectl-created sample the same way."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentry_localcluster.cluster import lock_holder
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .test_dev_stack import REPO, _cli, _three_ports, _up_args

pytestmark = pytest.mark.e2e

AGENTRY = Path(sys.executable).parent / "agentry"
USAGE = {"input_tokens": 40, "output_tokens": 9}
ANSWERS = ("An operator is a controller.", "A pod is a group of containers.", "A Job runs to completion.")


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
            assert len(llm.requests) == 3
    finally:
        # `down` stops whichever local cluster holds the lock: only ever ours, never another test's.
        holder = lock_holder()
        if holder is not None and holder.get("workdir") == str(workdir):
            down = _cli("down")
            assert down.returncode == 0, down.stdout + down.stderr
