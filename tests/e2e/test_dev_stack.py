"""`make dev` end to end: the stack comes up, the operator runs an Execution into a Job, Ctrl-C stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentry_devenv.procs import free_port, port_in_use

pytestmark = pytest.mark.e2e


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_stack_up_runs_and_stops_cleanly(tmp_path: Path) -> None:
    api, apiserver, firestore = free_port(), free_port(), free_port()
    out = (tmp_path / "out.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentry_devenv.cli",
            "up",
            "--workdir",
            str(tmp_path / "dev"),
            "--api-port",
            str(api),
            "--apiserver-port",
            str(apiserver),
            "--firestore-port",
            str(firestore),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log = tmp_path / "out.log"
    try:
        deadline = time.monotonic() + 300
        while "Ctrl-C stops everything" not in log.read_text():
            assert proc.poll() is None, f"agentry-dev exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()}"
            time.sleep(0.5)
        text = log.read_text()
        assert "1/5 Firestore emulator" in text and "dashboard:  http://127.0.0.1:" in text
        assert httpx.get(f"http://127.0.0.1:{api}/healthz").json() == {"status": "ok"}

        kubeconfig = tmp_path / "dev" / "kube" / "admin.kubeconfig"
        names = _kubectl(kubeconfig, "get", "agents", "-o", "name").stdout.split()
        assert "agent.agentry.dev/hello" in names
        created = _kubectl(kubeconfig, "create", "-f", "manifests/samples/execution.yaml", "-o", "name")
        assert created.returncode == 0, created.stderr
        execution = created.stdout.strip().split("/")[-1]
        deadline = time.monotonic() + 60
        while True:
            jobs = _kubectl(
                kubeconfig, "get", "jobs", "-l", f"agentry.dev/execution={execution}", "-o", "name"
            ).stdout
            if jobs.strip():
                break
            assert time.monotonic() < deadline, "the operator never created the Job"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log.read_text()
    assert "stopped every process" in log.read_text()
    for port in (api, apiserver, firestore):
        assert not port_in_use(port), f"port {port} still in use after Ctrl-C"


def test_dev_stack_reports_a_taken_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentry_devenv.cli",
                "up",
                "--workdir",
                str(tmp_path),
                "--api-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} for the Agentry API is already in use" in result.stdout
    assert "AGENTRY_API_PORT" in result.stdout and "Traceback" not in result.stdout + result.stderr
