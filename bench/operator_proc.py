"""What the operator benchmarks share: the operator as a process (one namespace, no webhook, a quiet
liveness port), a control plane with the CRDs, its peak RSS, and waiting for objects to exist."""

from __future__ import annotations

import functools
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil
from lightkube import Client, KubeConfig
from lightkube.config.client_adapter import ConnectionParams
from lightkube.core.resource import api_info

from agentry_localcluster import localhttp
from agentry_localcluster.kube import REPO, ControlPlane
from agentry_localcluster.procs import Proc, start_with_ports

from .results import record


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
            lambda: localhttp.get(f"http://127.0.0.1:{health}/healthz").is_success,
            120,
            "healthy",
            ports=ports,
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


def record_rss(bench: str, figure: str, rss: int) -> None:
    """Print and record an operator's peak RSS against the issue's goal (200 MiB)."""
    print(f"{figure}: {rss / 2**20:.0f} MiB (goal <= 200 MiB)")
    record(bench, figure, f"{rss / 2**20:.0f} MiB", goal="<= 200 MiB", met=rss <= 200 * 2**20)


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


class PlaneCpu:
    """CPU seconds (user + system) used by the control plane's processes and by this process (the
    bench's client), read at the start and end of a phase: where a phase's time went, beside the
    operator's own CPU."""

    def __init__(self, plane: ControlPlane) -> None:
        self._procs = {p.name: psutil.Process(p.pid) for p in plane.procs} | {"client": psutil.Process()}
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        return {name: sum(proc.cpu_times()[:2]) for name, proc in self._procs.items()}

    def used(self) -> dict[str, float]:
        """Seconds of CPU per process since this was made."""
        now = self._read()
        return {name: now[name] - self._start[name] for name in now}


def cpu_line(used: dict[str, float]) -> str:
    """`used` for a log line: the total first, then each process."""
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items())
    return f"{sum(used.values()):.1f} s ({parts})"


def count(client: Client, kind: Any, ns: str) -> int:
    """How many `kind` exist in `ns`: a list of one item and the server's count of the rest. Listing
    them all (10,000 Jobs are about 30 MB), or watching and decoding every event, would load the API
    server and this process with what the bench measures."""
    res = api_info(kind)
    prefix = f"/apis/{res.resource.group}/{res.resource.version}" if res.resource.group else "/api/v1"
    params = {"limit": "1"}
    answer = _http(client).get(f"{prefix}/namespaces/{ns}/{res.plural}", params=params)
    answer.raise_for_status()
    body = answer.json()
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)


@functools.cache
def _http(client: Client) -> httpx2.Client:
    """A plain HTTP client with `client`'s server and credentials (kubeconfig)."""
    return httpx2.Client(**ConnectionParams().httpx_params(client.config))


def wait_count(client: Client, kind: Any, ns: str, n: int, limit: float = 3600, every: float = 0.25) -> float:
    """Seconds until `n` objects of `kind` exist in `ns` (counted every `every` seconds)."""
    t0 = time.perf_counter()
    while count(client, kind, ns) < n:
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"fewer than {n} {kind.__name__}s after {limit:.0f} s")
        time.sleep(every)
    return time.perf_counter() - t0
