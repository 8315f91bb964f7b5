"""A local Kubernetes node on this machine: containerd + runc, bridge CNI, kubelet, kube-proxy and a
NetworkPolicy engine (kube-router's firewall, netpol.py).

Nothing here is faked: pods are real containers. The parts come from where they can be had without a
container registry: containerd, runc, the CNI plugins and iptables from Debian (installed on demand),
kubelet and kube-proxy from the same pinned Kubernetes build as the control plane
(hack/provision-kube.sh), and a pause image built locally (`images.py`).

Everything the node creates on the host is namespaced so it can be found and removed again:

| what | where |
| --- | --- |
| containerd root, state, socket | `NODE_ROOT/containerd`, `NODE_RUN/containerd`, `.../containerd.sock` |
| gVisor's sandboxes' state (runsc's root) | `NODE_RUN/runsc` (gvisor.py) |
| network namespaces of pods | containerd's state dir (`netns_mounts_under_state_dir`), not `/run/netns` |
| kubelet root, pod logs | `NODE_ROOT/kubelet`, `NODE_ROOT/pod-logs` |
| CNI config, IPAM state | `NODE_ROOT/cni` |
| bridge `agentry0` | the node's address `NODE_IP` is the bridge's (pods' default gateway) |
| iptables | chains `AGENTRY-*` (forwarding, masquerade); kubelet's, kube-proxy's, kube-router's `KUBE-*` |
| ipsets | kube-router's `KUBE-SRC-*`, `KUBE-DST-*` (the pods a NetworkPolicy selects) |
| cgroups | `/agentry` in every hierarchy (kubelet's `cgroupRoot`), weighing the node's CPUs |

Only one node runs per machine (bridge, iptables chains and kube-proxy's rules are machine-wide):
`Cluster.up` holds the machine's lock (running.py) while it runs one. `cleanup()` removes whatever a
crashed run left behind.

The parts: layout.py (the names and places above), host.py (packages, preflight checks, network),
nodeconf.py (the parts' configuration files), cleanup.py (finding and removing leftovers), and here
the Node, which starts and stops the processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import gvisor

# The node's names and its host work live in their own modules; these are re-exported because callers
# (cluster.py, cli.py, the e2e tests) know them as `node.X`.
from .cleanup import cleanup, leftovers, remove_all_pods, shim_pids
from .host import crictl, ensure_host_packages, preflight, run, setup_network
from .images import BuiltImages, coredns_image, load_docker_image, pause_image
from .kube import KUBERNETES_SERVICE_IP, ControlPlane
from .layout import (
    CGROUP_ROOT,
    CLUSTER_DNS,
    CLUSTER_DOMAIN,
    NODE_BINARIES,
    NODE_IP,
    NODE_NAME,
    NODE_ROOT,
    NODE_RUN,
    containerd_socket,
)
from .netpol import USER as KUBE_ROUTER_USER
from .netpol import start_kube_router
from .nodeconf import cni_conflist, containerd_config, kube_proxy_config, kubelet_config
from .procs import Proc, ServerError, log_tail, start_with_ports

__all__ = [
    "CLUSTER_DNS",
    "CLUSTER_DOMAIN",
    "NODE_BINARIES",
    "NODE_IP",
    "NODE_NAME",
    "NODE_ROOT",
    "NODE_RUN",
    "Node",
    "cleanup",
    "containerd_socket",
    "crictl",
    "ensure_host_packages",
    "leftovers",
    "preflight",
    "setup_network",
    "shim_pids",
]

Say = Callable[[str], None]


# -- the node ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """containerd, kubelet, kube-proxy and kube-router for `plane` (started with node_ip=NODE_IP)."""

    workdir: Path
    plane: ControlPlane
    assets: Path
    runsc_shim: Path | None = None  # where runsc and gVisor's shim are: the `runsc` handler (gvisor.py)
    procs: list[Proc] = field(default_factory=list, repr=False)

    def start(self, say: Say, images: BuiltImages | None = None, timeout: float = 120) -> Node:
        """Start containerd, import the images, then the kubelet, kube-router and kube-proxy.

        Images are imported before the kubelet starts, so the pods it (re)creates from an earlier
        run's objects always use the images of this run.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        for d in (NODE_ROOT, NODE_RUN):
            d.mkdir(parents=True, exist_ok=True)
        self._write_cni_config()
        self._start_containerd(timeout)
        removed = remove_all_pods(self.assets)
        if removed:
            say(f"    removed {removed} pod sandbox(es) of an earlier run")
        for image in (pause_image(self.assets), coredns_image(self.assets)):
            image.ensure(self.assets, say)
        if images is not None:
            for tag in images.tags.values():
                if not load_docker_image(self.assets, tag, images.docker_host, say):
                    say(f"    {tag}: the node has this image already")
        self._start_kubelet(timeout)
        # Before Agentry's pods are applied: policies hold from their first packet.
        start_kube_router(
            self.assets,
            self.plane.client_kubeconfig("kube-router", KUBE_ROUTER_USER),
            self.workdir,
            timeout,
            self.procs.append,
        )
        self._start_kube_proxy(timeout)
        return self

    # containerd -------------------------------------------------------------------------------

    def _write_cni_config(self) -> None:
        conf_dir = NODE_ROOT / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "10-agentry.conflist").write_text(json.dumps(cni_conflist(), indent=2))

    def _start_containerd(self, timeout: float) -> None:
        path = self.workdir / "containerd.toml"
        env: dict[str, str] = {}
        runsc_config = None
        if self.runsc_shim is not None:
            runsc_config = self.workdir / "runsc.toml"
            debug = self.workdir / "runsc-debug" if os.environ.get("AGENTRY_RUNSC_DEBUG") else None
            runsc_config.write_text(gvisor.shim_config(self.runsc_shim, debug))
            # containerd finds a runtime's shim on its PATH.
            env["PATH"] = f"{self.runsc_shim}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        path.write_text(containerd_config(runsc_config))
        proc = Proc(
            "containerd",
            ["containerd", "--config", str(path), "--log-level", "warn"],
            self.workdir / "containerd.log",
            env=env,
        ).start()
        self.procs.append(proc)
        proc.wait_ready(
            lambda: crictl(self.assets, "info", check=False).returncode == 0, timeout, "serving CRI"
        )

    # kubelet ----------------------------------------------------------------------------------

    def _start_kubelet(self, timeout: float) -> None:
        plane, pki = self.plane, self.plane.pki
        kubeconfig = plane.client_kubeconfig("kubelet", f"system:node:{NODE_NAME}", org="system:nodes")
        serving = pki.issue(
            "kubelet-serving",
            NODE_NAME,
            dns=(NODE_NAME, "localhost"),
            ips=(NODE_IP, "127.0.0.1"),
            server=True,
        )
        _make_cgroup_roots()

        # The kubelet's port goes in its config: a quiet port, started again on another if taken.
        def on(ports: tuple[int, ...]) -> None:
            (port,) = ports
            path = self.workdir / "kubelet.yaml"
            path.write_text(yaml.safe_dump(kubelet_config(port, serving, pki.ca.cert)))
            kubelet = Proc(
                "kubelet",
                [
                    str(self.assets / "kubelet"),
                    f"--config={path}",
                    f"--kubeconfig={kubeconfig}",
                    f"--root-dir={NODE_ROOT / 'kubelet'}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={NODE_IP}",
                    "--node-labels=agentry.dev/local-node=true",
                ],
                self.workdir / "kubelet.log",
            ).start()
            kubelet.wait_ready(
                self._node_ready, timeout, f"registered as node {NODE_NAME} and Ready", ports=ports
            )
            self.procs.append(kubelet)

        start_with_ports("the kubelet", 1, on, host=NODE_IP)

    def restart_kubelet(self, down: float, timeout: float = 120) -> None:
        """SIGKILL the kubelet, as a crash would (the containers go on under containerd), and start it
        again after `down` seconds (fault tests)."""
        old = next(p for p in self.procs if p.name == "kubelet")
        old.kill()
        self.procs.remove(old)
        time.sleep(down)
        self._start_kubelet(timeout)

    def _node_ready(self) -> bool:
        result = self.plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # kube-proxy -------------------------------------------------------------------------------

    def _start_kube_proxy(self, timeout: float) -> None:
        kubeconfig = self.plane.client_kubeconfig("kube-proxy", "system:kube-proxy")

        # Its healthz and metrics ports go in its config: quiet ports, others if one is taken.
        def on(ports: tuple[int, ...]) -> None:
            healthz, metrics = ports
            path = self.workdir / "kube-proxy.yaml"
            path.write_text(yaml.safe_dump(kube_proxy_config(kubeconfig, healthz, metrics)))
            proxy = Proc(
                "kube-proxy",
                [str(self.assets / "kube-proxy"), f"--config={path}"],
                self.workdir / "kube-proxy.log",
            ).start()
            proxy.wait_ready(
                lambda: (
                    f"-d {KUBERNETES_SERVICE_IP}/32" in run("iptables-save", "-t", "nat", check=False).stdout
                ),
                timeout,
                f"programming Service rules (iptables nat rule for {KUBERNETES_SERVICE_IP})",
                ports=ports,
            )
            self.procs.append(proxy)

        start_with_ports("kube-proxy", 2, on, host="127.0.0.1")

    # stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """kubelet first (so it restarts nothing), then every pod, kube-proxy, containerd."""
        by_name = {p.name: p for p in self.procs}
        if "kubelet" in by_name:
            by_name["kubelet"].stop()
        if "containerd" in by_name and by_name["containerd"].alive():
            with contextlib.suppress(ServerError, subprocess.SubprocessError):
                remove_all_pods(self.assets)
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log})\n{log_tail(p.log, 15)}" for p in self.procs)


def _make_cgroup_roots() -> None:
    """cgroup v1: the kubelet expects its cgroupRoot to exist in every hierarchy.

    Its CPU weight is the one a kubelet gives `kubepods` on a real node (the node's CPUs in shares):
    left at the default (1024), every pod together weighed as much as one host process, so the host's
    own processes (the control plane, the Firestore emulator, a benchmark's client) crowded them out."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if hierarchy.is_dir() and not (hierarchy / "cgroup.controllers").exists():
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP_ROOT).mkdir(exist_ok=True)
    shares = Path("/sys/fs/cgroup/cpu") / CGROUP_ROOT / "cpu.shares"
    with contextlib.suppress(OSError):
        shares.write_text(str(pod_cpu_shares()))


def pod_cpu_shares() -> int:
    """What a kubelet gives `kubepods`: 1024 per CPU of the node (cgroup v1 `cpu.shares`)."""
    return 1024 * (os.cpu_count() or 1)
