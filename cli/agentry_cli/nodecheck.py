"""`agentry doctor`'s look at the kubelets: is each run pod bounded where the node is shared?

Each node's kubelet configuration is read through the API server (`GET /api/v1/nodes/<node>/proxy/configz`,
what `kubectl get --raw` does; it needs `get` on `nodes/proxy`, a cluster admin's right). The check is
red where `podPidsLimit` is unset (the kubelet's default, -1: no limit), because then one run's fork bomb
can take every PID of its node, the kubelet's and the other pods' included. Nothing is changed.
"""

from __future__ import annotations

import time
from typing import Any

from httpx2 import Client as HttpClient
from lightkube import KubeConfig
from lightkube.config.client_adapter import Client, ConnectionParams

from .doctor import Check

NAME = "kubelet pids"
MAX_NODES = 20  # read at most this many nodes' configurations (a big cluster: a sample, said so)
HOW_TO_CHECK = "kubectl get --raw /api/v1/nodes/NODE/proxy/configz | jq .kubeletconfig.podPidsLimit"
HOW_TO_SET = (
    "set the kubelet's podPidsLimit (e.g. 1024): KubeletConfiguration `podPidsLimit`, or on GKE a node "
    "pool's system config `kubeletConfig: {podPidsLimit: 1024}` (docs/gke.md); check with: " + HOW_TO_CHECK
)


def pods_pids_limit(configz: dict[str, Any]) -> int | None:
    """A kubelet's per-pod PID limit, None when it has none (unset, 0 or -1)."""
    value = (configz.get("kubeletconfig") or {}).get("podPidsLimit")
    return value if isinstance(value, int) and value > 0 else None


def verdict(limits: dict[str, int | None], unread: dict[str, str], total: int, ms: float) -> Check:
    """One line for the nodes read: each node's limit, the nodes without one, the nodes not read."""
    if unread:
        first = next(iter(unread.values()))
        return Check(
            NAME,
            False,
            ms,
            f"cannot read the kubelet configuration of {', '.join(unread)}: {first}"[:300],
            "run doctor as a cluster admin (nodes/proxy), or check each node by hand: " + HOW_TO_CHECK,
        )
    unlimited = sorted(n for n, limit in limits.items() if limit is None)
    if unlimited:
        return Check(
            NAME,
            False,
            ms,
            f"no per-pod PID limit (podPidsLimit) on {', '.join(unlimited)}: one run's fork bomb can take "
            "every PID of its node",
            HOW_TO_SET,
        )
    if not limits:
        return Check(NAME, True, ms, "no nodes yet")
    seen = ", ".join(f"{n}: {limit}" for n, limit in sorted(limits.items()))
    more = f" (first {len(limits)} of {total} nodes)" if total > len(limits) else ""
    return Check(NAME, True, ms, f"podPidsLimit {seen}{more}")


def cluster_http(kubeconfig: str | None) -> HttpClient:
    """An HTTP client to the API server of the kubeconfig's current context (lightkube's credentials,
    TLS and 10 s timeout), for the doctor's raw reads."""
    config = (KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()).get()
    if config is None:
        raise ValueError("the kubeconfig has no current context")
    return Client(config, ConnectionParams())


def check_kubelets(kubeconfig: str | None) -> Check:
    """The kubelets' PID limits (each request times out after lightkube's 10 s); red, with what to do,
    when they cannot be read."""
    started = time.perf_counter()
    try:
        with cluster_http(kubeconfig) as http:
            return _read(http, started)
    except Exception as exc:  # a doctor reports every failure as a red line, never a traceback
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        return verdict({}, {"the cluster": why}, 0, (time.perf_counter() - started) * 1000)


def _read(http: HttpClient, started: float) -> Check:
    limits: dict[str, int | None] = {}
    unread: dict[str, str] = {}
    nodes = http.get("/api/v1/nodes")
    nodes.raise_for_status()
    names = [item["metadata"]["name"] for item in nodes.json().get("items") or []]
    for name in names[:MAX_NODES]:
        response = http.get(f"/api/v1/nodes/{name}/proxy/configz")
        if response.status_code != 200:
            unread[name] = f"HTTP {response.status_code} {response.text[:120].strip()}"
            continue
        limits[name] = pods_pids_limit(response.json())
    return verdict(limits, unread, len(names), (time.perf_counter() - started) * 1000)
