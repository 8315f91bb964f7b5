"""The operator as a process for benchmarks: one namespace, no webhook, a quiet liveness port."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from lightkube import Client, KubeConfig

from agentry_localcluster.kube import REPO, ControlPlane
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


def plane_with_crds(prefix: str) -> tuple[Path, ControlPlane, KubeConfig, Client]:
    """A control plane of its own in a new temporary directory, with Agentry's CRDs established.
    The caller stops the plane."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    plane = ControlPlane(work / "kube").start()
    try:
        config = KubeConfig.from_file(plane.kubeconfig)
        plane.kubectl("apply", "--server-side", "-f", str(REPO / "manifests" / "crds"))
        plane.kubectl(
            "wait", "--for=condition=Established", "crd/executions.agentry.dev", "crd/agents.agentry.dev"
        )
    except BaseException:
        plane.stop()
        raise
    return work, plane, config, Client(config, field_manager="bench")
