"""The node's NetworkPolicy engine: kube-router with only its network-policy controller.

Without it the bridge CNI enforces no NetworkPolicy at all, so the chart's policies (runs reach only
DNS, the gateway and their egress path) would be decoration on the local node. kube-router
(`--run-firewall`) turns each policy into iptables chains (`KUBE-ROUTER-*`, `KUBE-POD-FW-*`,
`KUBE-NWPLCY-*`) and ipsets (`KUBE-SRC-*`, `KUBE-DST-*`); with br_netfilter on, traffic between pods
on the bridge passes them too. Its routing, service proxy and CNI parts stay off (bridge CNI and
kube-proxy do that). It is built from the Go module proxy by hack/provision-kube.sh.

Why not sigs.k8s.io/kube-network-policies: it hands new connections to userspace with nftables'
`queue` statement, and kernels built without CONFIG_NFT_QUEUE (the test bed's) refuse that rule.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from . import localhttp
from .host import iptables, run
from .kube import SERVICE_CIDR
from .layout import NODE_NAME
from .procs import Proc, ServerError, start_with_ports

Say = Callable[[str], None]

USER = "system:kube-router"
FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"
# What kube-router leaves on the host: chains (removed with every `KUBE-` chain by cleanup.py) and ipsets.
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-")

_READ = ["get", "list", "watch"]
RBAC: list[dict[str, Any]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "agentry:kube-router"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["namespaces", "pods", "nodes", "services", "endpoints"],
                "verbs": _READ,
            },
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _READ},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "agentry:kube-router"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "agentry:kube-router",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    },
]


def kube_router_argv(binary: Path, kubeconfig: Path, health_port: int) -> list[str]:
    """Network policies only, for this node, IPv4, health on its own port, no metrics."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={NODE_NAME}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--run-loadbalancer=false",
        "--enable-cni=false",
        "--enable-ipv6=false",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--health-port={health_port}",
        "--metrics-port=0",
        "--v=1",  # each sync and how long it took: why a new pod waited, in kube-router.log
    ]


def _programmed(port: int) -> bool:
    """Healthy, and its top-level chain is in the filter table's FORWARD chain."""
    try:
        healthy = localhttp.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
    except httpx.HTTPError:
        return False
    forward = iptables("-S", "FORWARD", check=False).stdout
    return healthy and f"-j {FORWARD_CHAIN}" in forward


def start_kube_router(
    assets: Path, kubeconfig: Path, workdir: Path, timeout: float, on_start: Callable[[Proc], None]
) -> None:
    """Start kube-router (the node must be registered: it reads its InternalIP) and wait until its
    chains are in place; `on_start` gets the process once it is ready."""
    if run("ipset", "list", "-n", check=False).returncode != 0:
        raise ServerError("`ipset list` failed: the NetworkPolicy engine needs the kernel's ip_set support")

    def on(ports: tuple[int, ...]) -> None:
        (port,) = ports
        argv = kube_router_argv(assets / "kube-router", kubeconfig, port)
        proc = Proc("kube-router", argv, workdir / "kube-router.log").start()
        what = f"enforcing NetworkPolicy ({FORWARD_CHAIN} in FORWARD)"
        proc.wait_ready(lambda: _programmed(port), timeout, what, ports=ports)
        on_start(proc)

    start_with_ports("kube-router", 1, on)


def ipsets() -> list[str]:
    """kube-router's ipsets on this machine."""
    if shutil.which("ipset") is None:
        return []
    result = run("ipset", "list", "-n", check=False)
    if result.returncode != 0:
        return []
    return [name for name in result.stdout.split() if name.startswith(IPSET_PREFIXES)]


def destroy_ipsets() -> int:
    """Destroy kube-router's ipsets (after its chains, which reference them, are gone)."""
    names = ipsets()
    for name in names:
        run("ipset", "destroy", name, check=False)
    return len(names)
