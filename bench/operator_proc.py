"""The operator as a process for benchmarks: one namespace, no webhook, a quiet liveness port."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.procs import Proc, start_with_ports


def start_operator(plane: ControlPlane, work: Path, ns: str) -> Proc:
    """Start the operator watching `ns` and wait until it is healthy."""

    def on(ports: tuple[int, ...]) -> Proc:
        (health,) = ports
        proc = Proc(
            "agentry-operator",
            [
                sys.executable,
                "-m",
                "agentry_operator.main",
                f"--namespace={ns}",
                f"--liveness=http://127.0.0.1:{health}/healthz",
            ],
            work / "operator.log",
            env={
                "KUBECONFIG": str(plane.kubeconfig),
                "AGENTRY_METRICS_PORT": "0",
                "AGENTRY_WEBHOOK_ENABLED": "false",
            },
        ).start()
        proc.wait_ready(
            lambda: httpx.get(f"http://127.0.0.1:{health}/healthz").is_success, 120, "healthy", ports=ports
        )
        return proc

    # The liveness port goes on its command line: a quiet port, another one if it is taken.
    return start_with_ports("the operator", 1, on)
