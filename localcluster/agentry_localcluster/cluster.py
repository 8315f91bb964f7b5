"""A complete single-node Kubernetes cluster on this machine: control plane + node + Services + DNS.

    cluster = Cluster(workdir)
    cluster.up(say, images)    # lock, preflight, binaries, network, control plane, node (images
                               # imported into containerd, only what changed), CoreDNS
    cluster.down()             # everything stopped, host state removed

One cluster per machine: `up` takes the machine's lock (running.py) and `down` releases it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import gvisor
from . import node as n
from .dns import coredns_manifests, dns_query
from .images import BuiltImages
from .kube import CONTROL_PLANE, ControlPlane, provision
from .netpol import RBAC as KUBE_ROUTER_RBAC
from .procs import ServerError, log_tail
from .proctable import pid_alive
from .running import STATE, acquire_lock, lock_holder
from .storage import Provisioner, storage_class

BINARIES = (*CONTROL_PLANE, "helm", *n.NODE_BINARIES)
Say = Callable[[str], None]

# Re-exported: callers (the e2e tests) know these as `cluster.X`.
__all__ = ["BINARIES", "NODE_ROLE_BINDING", "Cluster", "lock_holder", "pid_alive"]


def _quiet(msg: str) -> None:
    pass


NODE_ROLE_BINDING: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "agentry:local-node"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
    "subjects": [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": f"system:node:{n.NODE_NAME}"}
    ],
}


@dataclass
class Cluster:
    workdir: Path
    apiserver_port: int = 0
    owner: str = "agentry"  # who runs it, for the message another caller gets
    plane: ControlPlane = field(init=False)
    node: n.Node | None = field(default=None, init=False)
    assets: Path | None = field(default=None, init=False)
    volumes: Provisioner | None = field(default=None, init=False)
    _lock: IO[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.plane = ControlPlane(
            self.workdir / "kube", apiserver_port=self.apiserver_port, node_ip=n.NODE_IP
        )

    # lock ---------------------------------------------------------------------------------------

    def acquire(self, wait: float = 0, say: Say = _quiet) -> None:
        self._lock = acquire_lock(self.owner, self.workdir, wait, say)

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                STATE.unlink()
            self._lock.close()
            self._lock = None

    # up / down ----------------------------------------------------------------------------------

    def up(self, say: Say, images: BuiltImages | None = None, wait_for_lock: float = 0) -> Cluster:
        """Start everything; on failure, stop what was started and raise ServerError."""
        n.preflight(say)
        self.acquire(wait_for_lock, say)
        try:
            self._up(say, images)
        except BaseException:
            self.down()
            raise
        return self

    def _up(self, say: Say, images: BuiltImages | None) -> None:
        t0 = time.monotonic()
        n.ensure_host_packages(say)
        self.assets = provision(BINARIES)
        self.plane.assets = self.assets
        for line in n.cleanup():
            say(f"    cleanup of an earlier run: {line}")
        n.setup_network()
        say("    control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) ...")
        self.plane.start()
        say(f"    node {n.NODE_NAME} (containerd, kubelet, kube-router, kube-proxy) at {n.NODE_IP} ...")
        # The Node authorizer lets a kubelet read a Secret only once its graph links the Secret to a
        # pod bound to the node; it lags the pod by a moment, and a run pod started in that moment
        # fails with "failed to sync secret cache". On a single node every pod is this node's anyway:
        # RBAC's system:node role (bound to no one by default) closes the gap.
        # gVisor's RuntimeClass too: pods may name it from the start (gvisor.py).
        self.apply([NODE_ROLE_BINDING, *KUBE_ROUTER_RBAC, gvisor.runtime_class()])
        shim = gvisor.build_shim()  # built in `make prepare`: a cache check here
        self.node = n.Node(self.workdir / "node", self.plane, self.assets, runsc_shim=shim)
        self.node.start(say, images)
        # Kept workspaces: the default StorageClass and its provisioner (storage.py). Its directories
        # live with etcd's data, under the workdir, so a restarted cluster finds its volumes again.
        self.apply([storage_class()])
        self.volumes = Provisioner(self.plane.http, self.workdir / "volumes").start()
        say("    cluster DNS (CoreDNS) ...")
        self.apply(coredns_manifests())
        self._wait_dns(120)
        say(f"    cluster ready in {time.monotonic() - t0:.0f} s")

    def _wait_dns(self, timeout: float) -> None:
        want = "kubernetes.default.svc." + n.CLUSTER_DOMAIN
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if dns_query(want):
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        kubectl = self.plane.kubectl
        pods = kubectl("-n", "kube-system", "get", "pods", "-o", "wide", check=False).stdout
        # Why a pod is stuck (sandbox, CNI, image): its events, and the kubelet's own last words.
        described = kubectl(
            "-n", "kube-system", "describe", "pods", "-l", "k8s-app=kube-dns", check=False
        ).stdout
        kubelet = log_tail(self.node.workdir / "kubelet.log", 30) if self.node else "(no node)"
        raise ServerError(
            f"cluster DNS at {n.CLUSTER_DNS} does not resolve {want} after {timeout:.0f} s ({last!r}).\n"
            f"kube-system pods:\n{pods}\nCoreDNS pods described (tail):\n"
            + "\n".join(described.splitlines()[-25:])
            + f"\nkubelet log (tail):\n{kubelet}"
        )

    def apply(self, objects: list[dict[str, Any]], namespace: str | None = None) -> None:
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=agentry-dev", "-f", "-"]
        if namespace:
            args = ["-n", namespace, *args]
        stream = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        result = self.plane.kubectl(*args, input=stream, check=False)
        if result.returncode != 0:
            raise ServerError(f"kubectl apply failed: {result.stderr.strip()}")

    def down(self) -> None:
        """Stop every process and remove the host state (bridge, iptables rules, mounts, shims)."""
        try:
            if self.volumes is not None:
                self.volumes.stop()
                self.volumes = None
            if self.node is not None:
                self.node.stop()
                self.node = None
            self.plane.stop()
            if self._lock is not None:
                n.cleanup()
        finally:
            self.release()

    # status -------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return self.plane.env()
