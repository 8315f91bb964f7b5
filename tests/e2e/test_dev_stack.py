"""`make dev` end to end: images, a real local cluster, Agentry installed by its chart, the dashboard on
localhost, a sample agent whose run reaches a real pod; Ctrl-C (or `agentry-dev down` after a crash)
leaves nothing running.

Each `up` takes about a minute warm (images and binaries cached). Only one local cluster runs per
machine: the tests wait (up to 20 min) for another run's to end before they start theirs. `up
--detach` with a provider key, the CLI against it and `down` after a killed `up` are in test_cli_dev.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentry_localcluster import localhttp
from agentry_localcluster import node as n
from agentry_localcluster.cli import READY_LINE
from agentry_localcluster.cluster import lock_holder
from agentry_localcluster.procs import port_in_use, quiet_port
from tests.fixtures.helpers import patient

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    """No LLM provider: `make dev` must still come up and say how to configure one."""
    drop = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _cli(*args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentry_localcluster.cli", *args],
        capture_output=True,
        text=True,
        timeout=patient(timeout),
        env={**_env(), **env},
        cwd=REPO,
    )


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["kubectl", f"--kubeconfig={kubeconfig}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=patient(60), check=False)


def _three_ports() -> tuple[int, int, int]:
    """Distinct ports for `agentry-dev up`'s fixed ports (API, kube-apiserver, Firestore). Below the
    ephemeral range (`quiet_port`): no bind(0) or outgoing connection takes them before the stack binds
    them, and the stack keeps its own servers off them (`avoid_ports`)."""
    ports: list[int] = []
    for _ in range(3):
        ports.append(quiet_port(exclude=ports))
    return ports[0], ports[1], ports[2]


def _wait_ready(log: Path, proc: subprocess.Popen[bytes] | None, timeout: float = 1500) -> str:
    deadline = time.monotonic() + patient(timeout)
    while READY_LINE not in log.read_text(errors="replace"):
        text = log.read_text(errors="replace")
        if proc is not None:
            assert proc.poll() is None, f"agentry-dev exited early:\n{text[-6000:]}"
        assert "[agentry] error:" not in text, text[-6000:]
        assert time.monotonic() < deadline, f"not ready in time:\n{text[-6000:]}"
        time.sleep(1)
    return log.read_text(errors="replace")


def _wait_finished(kubeconfig: Path, execution: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + patient(timeout)
    status: dict[str, Any] = {}
    while status.get("phase") not in ("Failed", "Succeeded"):
        assert time.monotonic() < deadline, f"the sample run did not finish: {status}"
        time.sleep(1)
        got = _kubectl(kubeconfig, "-n", "agentry-workloads", "get", "execution", execution, "-o", "json")
        status = json.loads(got.stdout).get("status", {})
    return status


def _processes_mentioning(*needles: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _assert_nothing_left(workdir: Path, ports: tuple[int, ...]) -> None:
    assert n.leftovers() == [], n.leftovers()
    left = _processes_mentioning(str(workdir), str(n.containerd_socket()), "agentry_localcluster.relay")
    assert left == [], "processes still running:\n" + "\n".join(left)
    for port in ports:
        assert not port_in_use(port, "0.0.0.0"), f"port {port} still in use"
    status = _cli("status")
    assert status.returncode == 3 and "not running" in status.stdout, status.stdout + status.stderr


@pytest.fixture(autouse=True)
def _node_free() -> None:
    """Only one local cluster runs per machine: wait for another test run's (or `make dev`'s) to end."""
    deadline = time.monotonic() + patient(1200)
    while (holder := lock_holder()) is not None:
        assert time.monotonic() < deadline, f"the local node stayed busy: {holder}"
        time.sleep(5)


def _up_args(workdir: Path, api: int, apiserver: int, firestore: int) -> list[str]:
    return [
        "up",
        f"--workdir={workdir}",
        f"--api-port={api}",
        f"--apiserver-port={apiserver}",
        f"--firestore-port={firestore}",
    ]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_make_dev_runs_agents_in_real_pods_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    api, apiserver, firestore = _three_ports()
    workdir = tmp_path / "dev"
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentry_localcluster.cli", *_up_args(workdir, api, apiserver, firestore)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # As CI launchers and `nohup make dev &` start it: SIGINT inherited as ignored, so only a
            # handler `up` installs itself can make the Ctrl-C below stop it.
            preexec_fn=_ignore_sigint,
            env=_env(),
            cwd=REPO,
        )
    try:
        text = _wait_ready(log, proc)
        for step in range(1, 7):
            assert f"{step}/6 " in text
        assert f"dashboard:  http://127.0.0.1:{api}/" in text
        assert "no LLM provider configured" in text and "ANTHROPIC_API_KEY" in text
        _assert_signed_in_link_shows_the_samples(text, api)
        assert localhttp.get(f"http://127.0.0.1:{api}/healthz", timeout=10).is_success

        status = _cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "kubernetes.default -> 10.96.0.1" in status.stdout and "healthy" in status.stdout
        # `agentry doctor` against it: everything answers; both LLM channels are red, with the fix.
        doctor = _cli("doctor", timeout=120)
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        for green in ("gateway", "firestore", "kube-apiserver", "operator", "api"):
            assert re.search(rf"^✔ {green} +OK", doctor.stdout, re.M), doctor.stdout
        assert re.search(r"^✘ channel anthropic +FAIL .*has no API key", doctor.stdout, re.M), doctor.stdout
        assert "fix: mount the key of channel anthropic" in doctor.stdout

        kubeconfig = workdir / "kube" / "admin.kubeconfig"
        node = json.loads(_kubectl(kubeconfig, "get", "node", n.NODE_NAME, "-o", "json").stdout)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        # The operator and the API run in the cluster, installed by the chart.
        pods = json.loads(_kubectl(kubeconfig, "-n", "agentry-system", "get", "pods", "-o", "json").stdout)
        component = "app.kubernetes.io/component"
        running = {p["metadata"]["labels"].get(component): p["status"]["phase"] for p in pods["items"]}
        assert running.get("operator") == running.get("api") == running.get("gateway") == "Running", running
        assert "LLM gateway: runs call it with a per-run token" in text

        ns = ("-n", "agentry-workloads")
        assert "agent.agentry.dev/hello" in _kubectl(kubeconfig, *ns, "get", "agents", "-o", "name").stdout
        created = _kubectl(kubeconfig, *ns, "create", "-f", "manifests/samples/execution.yaml", "-o", "name")
        assert created.returncode == 0, created.stderr
        execution = created.stdout.strip().split("/")[-1]
        status_obj = _wait_finished(kubeconfig, execution)
        # Without a provider key the run reaches a real pod and calls the gateway, which has no key
        # to call the provider with: the Execution says so plainly.
        assert status_obj["phase"] == "Failed", status_obj
        said = status_obj["message"] + json.dumps(status_obj.get("result"))
        assert "channel 'anthropic' has no API key" in said, status_obj
        _assert_the_run_gate_holds(kubeconfig)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(180)
        except subprocess.TimeoutExpired:
            # Never leave the node to the next test: kill it and remove what it left, then fail.
            proc.kill()
            proc.wait(30)
            _cli("down")
            raise
    assert code == 0, log.read_text()[-6000:]
    assert "stopped every process" in log.read_text()
    _assert_nothing_left(workdir, (api, apiserver, firestore))


def test_dev_stack_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("up", f"--workdir={tmp_path}", f"--api-port={port}", timeout=60)
    assert result.returncode == 1
    assert f"port {port} for the Agentry API is already in use" in result.stdout
    assert "AGENTRY_API_PORT" in result.stdout and "Traceback" not in result.stdout + result.stderr


def _assert_signed_in_link_shows_the_samples(text: str, api: int) -> None:
    """The printed link signs a browser in (as the dashboard's script does with the #token part) as
    the owner of the kubectl-applied samples: they are in its agent list; a guest's list is empty."""
    found = re.search(rf"signed in:  http://127\.0\.0\.1:{api}/#token=(agt_[A-Za-z0-9_-]+)", text)
    assert found, text[-3000:]
    base = f"http://127.0.0.1:{api}"
    with httpx.Client(base_url=base, headers={"Origin": base}, timeout=15) as browser:
        assert browser.post("/api/session/token", json={"token": found.group(1)}).status_code == 200
        names = {a["name"] for a in browser.get("/api/agents").json()["items"]}
        assert "hello" in names, names
    with httpx.Client(base_url=base, headers={"Origin": base}, timeout=15) as guest:
        assert guest.post("/api/session/guest").status_code == 201
        assert guest.get("/api/agents").json()["items"] == []


def _create(kubeconfig: Path, manifest: dict[str, Any], user: str | None = None, verb: str = "create") -> Any:
    as_user = [f"--as={user}"] if user else []
    argv = ["kubectl", f"--kubeconfig={kubeconfig}", *as_user, "-n", "agentry-workloads", verb, "-f", "-"]
    return subprocess.run(
        argv, input=json.dumps(manifest), capture_output=True, text=True, timeout=patient(60), check=False
    )


def _assert_the_run_gate_holds(kubeconfig: Path) -> None:
    """The outsider's finding on `make dev`: a namespace user with a Role on agentry.dev/* only starts no
    run of a dashboard user's Agent, while the API's ServiceAccount does (as installed by the chart: its
    identities act for owners, and the run gate's book lands in the release namespace)."""
    api_sa, rbac, owner = (
        "system:serviceaccount:agentry-system:agentry-api",
        "rbac.authorization.k8s.io",
        "v1",
    )
    rules = [{"apiGroups": ["agentry.dev"], "resources": ["*"], "verbs": ["*"]}]
    role = {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": {"name": "tenant"}, "rules": rules}
    binding = {
        "apiVersion": f"{rbac}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tenant"},
        "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "tenant"},
        "subjects": [{"apiGroup": rbac, "kind": "User", "name": "mallory"}],
    }
    for obj in (role, binding):
        assert _create(kubeconfig, obj, verb="apply").returncode == 0
    labels = {"agentry.dev/owner": owner}
    agent = {
        "kind": "Agent",
        "metadata": {"name": "victims", "labels": labels},
        "spec": {"instructions": "hi"},
    }
    made = _create(kubeconfig, {"apiVersion": "agentry.dev/v1alpha1", **agent}, user=api_sa)
    assert made.returncode == 0, made.stderr

    def run(name: str, **meta: Any) -> dict[str, Any]:
        return {
            "apiVersion": "agentry.dev/v1alpha1",
            "kind": "Execution",
            "metadata": {"name": name, **meta},
            "spec": {"agentRef": {"name": "victims"}},
        }

    stolen = _create(kubeconfig, run("stolen"), user="mallory")
    assert stolen.returncode != 0 and "belongs to an Agentry user" in stolen.stderr, stolen.stderr
    ours = _create(kubeconfig, run("ours", labels=labels), user=api_sa)
    assert ours.returncode == 0, ours.stderr
    assert _wait_finished(kubeconfig, "ours")["reason"] != "OwnerMismatch"
    component = "app.kubernetes.io/component=run-gate"
    books = _kubectl(kubeconfig, "-n", "agentry-system", "get", "configmaps", "-l", component, "-o", "name")
    assert books.stdout.strip().startswith("configmap/agentry-runs-"), books.stdout + books.stderr
