"""What the operator benchmarks share: the operator as a process (one namespace, no webhook, a quiet
liveness port), a control plane with the CRDs, its peak RSS, and waiting for objects to exist."""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
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


class Peak:
    """The peak RSS of a process, sampled every `every` seconds on a thread."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.proc, self.peak, self.every, self._stop = psutil.Process(pid), 0, every, threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.every)

    def stop(self) -> int:
        self._stop.set()
        return self.peak


def wait_count(client: Client, kind: Any, ns: str, n: int, limit: float = 3600) -> float:
    """Seconds until `n` objects of `kind` exist in `ns`, counted by a watch. Listing them again and
    again would load the API server (and the bench's own process) with what it measures: 10,000 Jobs
    are about 30 MB a listing."""
    t0, done, names = time.perf_counter(), threading.Event(), set[str]()

    def count() -> None:
        for op, obj in client.watch(kind, namespace=ns):  # existing objects come first, as ADDED
            if op == "ADDED":
                names.add(obj.metadata.name)
            elif op == "DELETED":
                names.discard(obj.metadata.name)
            if len(names) >= n:
                done.set()
                return

    threading.Thread(target=count, daemon=True).start()
    if not done.wait(limit):
        raise SystemExit(f"fewer than {n} {kind.__name__}s after {limit:.0f} s ({len(names)})")
    return time.perf_counter() - t0
