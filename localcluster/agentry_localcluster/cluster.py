"""A complete single-node Kubernetes cluster on this machine: control plane + node + Services + DNS.

    cluster = Cluster(workdir)
    cluster.up(say)            # lock, preflight, binaries, network, control plane, node, CoreDNS
    cluster.load_images(...)   # docker save | ctr import, only what changed
    cluster.down()             # everything stopped, host state removed

One cluster per machine (the node's bridge, iptables chains and kube-proxy rules are machine-wide):
`up` takes an exclusive lock on NODE_RUN/lock, held until `down` or until the process exits, and
writes NODE_RUN/state.json saying who runs it. `stop_running()` (`agentry-dev down`) stops the
process holding the lock and removes what it left (see node.cleanup).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import node as n
from .images import BuiltImages, coredns_image
from .kube import CONTROL_PLANE, ControlPlane, provision
from .procs import ServerError, log_tail

LOCK = n.NODE_RUN / "lock"
STATE = n.NODE_RUN / "state.json"
BINARIES = (*CONTROL_PLANE, "helm", *n.NODE_BINARIES)
Say = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


# -- DNS probe (no dependency: one UDP query) -------------------------------------------------------


def dns_query(name: str, server: str = n.CLUSTER_DNS, timeout: float = 2) -> list[str]:
    """A records of name from server; [] when the name does not exist; raises OSError when no answer."""
    qid = random.randint(0, 0xFFFF)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, 53))
        data = s.recv(4096)
    rid, _flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if rid != qid:
        raise OSError("DNS answer for another query")
    pos = 12 + len(question) + 4
    found = []
    for _ in range(ancount):
        if data[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            found.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return found


# -- CoreDNS -------------------------------------------------------------------------------------


COREFILE = f""".:1053 {{
    errors
    health :8080
    ready :8181
    kubernetes {n.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}}
"""


def coredns_manifests() -> list[dict[str, Any]]:
    """Cluster DNS as kubeadm sets it up, but non-root on port 1053 (the Service maps 53 to it)."""
    ns, labels = "kube-system", {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": ns}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": coredns_image(Path("/")).tag,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 2,
                                },
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "clusterIP": n.CLUSTER_DNS,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                ],
            },
        },
    ]


NODE_ROLE_BINDING: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "agentry:local-node"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
    "subjects": [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": f"system:node:{n.NODE_NAME}"}
    ],
}


# -- lock and state ------------------------------------------------------------------------------


def read_state() -> dict[str, Any]:
    try:
        return dict(json.loads(STATE.read_text()))
    except (OSError, ValueError):
        return {}


def write_state_extra(**extra: str) -> None:
    """Add facts for `agentry-dev status` (dashboard URL, kubeconfig) to the running cluster's state."""
    state = read_state()
    if state.get("pid") == os.getpid():
        STATE.write_text(json.dumps({**state, **extra}))


def pid_alive(pid: int) -> bool:
    """True while pid runs (a zombie, dead but not reaped yet, counts as gone)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lock_holder() -> dict[str, Any] | None:
    """The state of the running cluster if some process holds the lock, else None."""
    if not LOCK.exists():
        return None
    with LOCK.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_state() or {"pid": None}
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


@dataclass
class Cluster:
    workdir: Path
    apiserver_port: int = 0
    owner: str = "agentry"  # who runs it, for the message another caller gets
    plane: ControlPlane = field(init=False)
    node: n.Node | None = field(default=None, init=False)
    assets: Path | None = field(default=None, init=False)
    _lock: IO[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.plane = ControlPlane(
            self.workdir / "kube", apiserver_port=self.apiserver_port, node_ip=n.NODE_IP
        )

    # lock ---------------------------------------------------------------------------------------

    def acquire(self, wait: float = 0, say: Say = _quiet) -> None:
        n.NODE_RUN.mkdir(parents=True, exist_ok=True)
        f = LOCK.open("a")
        deadline, told = time.monotonic() + wait, False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                state = read_state()
                who = f"pid {state.get('pid')} ({state.get('owner')}, {state.get('workdir')})"
                if time.monotonic() >= deadline:
                    f.close()
                    raise ServerError(
                        f"another local cluster is running on this machine: {who}. Only one can run at "
                        "a time (the node's network is machine-wide). Stop it with `agentry-dev down` "
                        "(or Ctrl-C where it runs)."
                    ) from None
                if not told:
                    say(f"    waiting up to {wait:.0f} s for the local cluster of {who} to stop ...")
                    told = True
                time.sleep(2)
        self._lock = f
        previous = read_state()  # a run that was killed: stop what it left running
        if previous.get("workdir") and not pid_alive(int(previous.get("pid") or 0)):
            strays = run_processes(Path(str(previous["workdir"])))
            if strays:
                say(f"    stopping {len(strays)} process(es) of a killed run (pid {previous.get('pid')})")
                _terminate(list(strays))
        STATE.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "owner": self.owner,
                    "workdir": str(self.workdir),
                    "started": time.time(),
                }
            )
        )

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
        say(f"    node {n.NODE_NAME} (containerd, kubelet, kube-proxy) at {n.NODE_IP} ...")
        # The Node authorizer lets a kubelet read a Secret only once its graph links the Secret to a
        # pod bound to the node; it lags the pod by a moment, and a run pod started in that moment
        # fails with "failed to sync secret cache". On a single node every pod is this node's anyway:
        # RBAC's system:node role (bound to no one by default) closes the gap.
        self.apply([NODE_ROLE_BINDING])
        self.node = n.Node(self.workdir / "node", self.plane, self.assets)
        self.node.start(say, images)
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


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(proc.name))
    return tree


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def stack_processes(root_pid: int) -> dict[int, int]:
    """pid -> RSS bytes of root_pid, its descendants, and the containers of the node (via their shims)."""
    tree = _children()
    todo = [root_pid, *n.shim_pids()]
    seen: dict[int, int] = {}
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen[pid] = _rss(pid)
        todo.extend(tree.get(pid, []))
    return {pid: rss for pid, rss in seen.items() if rss}


def run_processes(workdir: Path) -> dict[int, str]:
    """pid -> name of processes of a local-cluster run, found by their command lines: anything naming
    its state directory (etcd, kube-*, kubelet, containerd), the dashboard relay, and the Firestore
    emulator on the node's address."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        line = " ".join(argv)
        if (
            f"{workdir}/" in line
            or "agentry_localcluster.relay" in line
            or ("firestore" in line and f"--host={n.NODE_IP}" in argv)
        ):
            found[int(proc.name)] = Path(argv[0]).name
    return found


def _terminate(pids: list[int], grace: float = 15) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stop_running(say: Say, timeout: float = 120) -> bool:
    """Stop the cluster another process runs (SIGTERM to it), or what a killed run left; then clean up.

    False if nothing was running and nothing was left.
    """
    holder = lock_holder()
    stopped = False
    if holder is not None and holder.get("pid"):
        pid = int(holder["pid"])
        say(f"stopping the local cluster of pid {pid} ({holder.get('owner')}, {holder.get('workdir')}) ...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            raise ServerError(f"pid {pid} did not stop within {timeout:.0f} s; stop it yourself (kill {pid})")
        stopped = True
    n.NODE_RUN.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        # A killed `up` could not stop its servers: they got SIGTERM (parent-death signal) and may
        # still be shutting down, or ignore it. The state file names its directory.
        state = read_state()
        if state.get("workdir"):
            strays = run_processes(Path(str(state["workdir"])))
            for stray_pid, name in strays.items():
                say(f"    stopping {name} (pid {stray_pid}), left by pid {state.get('pid')}")
                stopped = True
            _terminate(list(strays))
        for line in n.cleanup():
            say(f"    {line}")
            stopped = True
        with contextlib.suppress(OSError):
            STATE.unlink()
    return stopped
