"""A local Kubernetes node on this machine: containerd + runc, bridge CNI, kubelet and kube-proxy.

Nothing here is faked: pods are real containers. The parts come from where they can be had without a
container registry: containerd, runc, the CNI plugins and iptables from Debian (installed on demand),
kubelet and kube-proxy from the same pinned Kubernetes build as the control plane
(hack/provision-kube.sh), and a pause image built locally (`images.py`).

Everything the node creates on the host is namespaced so it can be found and removed again:

| what | where |
| --- | --- |
| containerd root, state, socket | `NODE_ROOT/containerd`, `NODE_RUN/containerd`, `.../containerd.sock` |
| network namespaces of pods | containerd's state dir (`netns_mounts_under_state_dir`), not `/run/netns` |
| kubelet root, pod logs | `NODE_ROOT/kubelet`, `NODE_ROOT/pod-logs` |
| CNI config, IPAM state | `NODE_ROOT/cni` |
| bridge `agentry0` | the node's address `NODE_IP` is the bridge's (pods' default gateway) |
| iptables | chains `AGENTRY-*` (forwarding, masquerade), and the kubelet's and kube-proxy's `KUBE-*` |
| cgroups | `/agentry` in every hierarchy (kubelet's `cgroupRoot`) |

Only one node runs per machine (bridge, iptables chains and kube-proxy's rules are machine-wide):
`cluster.py` holds a lock while it runs one. `cleanup()` removes whatever a crashed run left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .kube import KUBERNETES_SERVICE_IP, ControlPlane

if TYPE_CHECKING:
    from .images import BuiltImages
from .paths import node_root
from .procs import Proc, ServerError, log_tail, start_with_ports

NODE_ROOT = node_root()
NODE_RUN = Path(os.environ.get("AGENTRY_NODE_RUN", "/run/agentry-node"))
NODE_NAME = "agentry-node"
BRIDGE = "agentry0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"  # the bridge's address: pods' gateway, and where host services are reachable
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN = Path("/usr/lib/cni")
PAUSE_IMAGE = "docker.io/agentry/pause:3.10"
CGROUP_ROOT = "agentry"
CHAIN_PREFIX = "AGENTRY-"
MIN_FREE_BYTES = 5 * 1024**3
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "crictl", "coredns", "pause")

# What the node needs from Debian: a command (or file) -> the package providing it.
HOST_PACKAGES = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    str(CNI_BIN / "bridge"): "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "mount": "mount",
}

Say = Callable[[str], None]


def containerd_socket() -> Path:
    return NODE_RUN / "containerd" / "containerd.sock"


def _run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=120)
    if check and result.returncode != 0:
        raise ServerError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


# -- host preparation -------------------------------------------------------------------------------


def ensure_host_packages(say: Say) -> None:
    """apt-get install what the node needs from Debian, if missing (with progress)."""
    missing = sorted(
        {pkg for what, pkg in HOST_PACKAGES.items() if not (Path(what).exists() or shutil.which(what))}
    )
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ServerError(f"missing {', '.join(missing)} and no apt-get to install them; install them first")
    say(f"    installing {' '.join(missing)} (apt-get, once) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(argv, env=env, capture_output=True, check=False).returncode != 0:
        say("    apt-get update ...")
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServerError(f"apt-get install {' '.join(missing)} failed:\n{result.stderr[-2000:]}")


def _sysctl(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def preflight(say: Say) -> None:
    """Refuse to start, with the reason and the fix, when this machine cannot run a node."""
    if os.geteuid() != 0:
        raise ServerError(
            "the local node needs root (containerd, kubelet, iptables and network interfaces): "
            "run `make dev` (or the e2e tests) as root"
        )
    problems: list[str] = []
    filesystems = Path("/proc/filesystems").read_text()
    if "\toverlay" not in filesystems:
        problems.append("kernel feature missing: overlay filesystem (try `modprobe overlay`)")
    if not Path("/sys/module/bridge").exists() and not Path("/sys/class/net/" + BRIDGE).exists():
        subprocess.run(["modprobe", "bridge"], capture_output=True, check=False)
        if not Path("/sys/module/bridge").exists():
            problems.append("kernel feature missing: bridge (try `modprobe bridge`)")
    if not _sysctl("net.bridge.bridge-nf-call-iptables").exists():
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
        if not _sysctl("net.bridge.bridge-nf-call-iptables").exists():
            problems.append(
                "kernel feature missing: br_netfilter (Services between pods need bridged traffic to "
                "pass iptables; try `modprobe br_netfilter`)"
            )
    problems += _cgroup_problems()
    if problems:
        raise ServerError("this machine cannot run the local node:\n  - " + "\n  - ".join(problems))
    NODE_ROOT.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(NODE_ROOT).free
    if free < MIN_FREE_BYTES:
        raise ServerError(
            f"out of disk: {free / 1024**3:.1f} GiB free on the filesystem of {NODE_ROOT}; the node needs at "
            f"least {MIN_FREE_BYTES // 1024**3} GiB (images, containers, logs). Free some space, or "
            "prune old images with: crictl --runtime-endpoint "
            f"unix://{containerd_socket()} rmi --prune"
        )
    _check_pod_cidr()


def _cgroup_problems() -> list[str]:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # cgroup v2
        have = set((root / "cgroup.controllers").read_text().split())
    else:  # v1: one mount per controller
        have = {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()
    need = {"cpu", "memory", "pids"}
    return [
        f"kernel feature missing: cgroup controller {c} (mounted controllers: {sorted(have)})"
        for c in sorted(need - have)
    ]


def _check_pod_cidr() -> None:
    """The pod network must not overlap a network of this machine (other than our own bridge)."""
    pods = ipaddress.ip_network(POD_CIDR)
    routes = json.loads(_run("ip", "-j", "-4", "route", "show").stdout or "[]")
    for route in routes:
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if dst in ("default", "") or dev == BRIDGE:
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(dst, strict=False).overlaps(pods):
                raise ServerError(
                    f"the pod network {POD_CIDR} overlaps {dst} on {dev}; the local node cannot use it"
                )


def _write_sysctl(key: str, value: str) -> None:
    path = _sysctl(key)
    if path.read_text().strip() != value:
        path.write_text(value)


def _iptables(*args: str, table: str = "filter", check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("iptables", "-w", "5", "-t", table, *args, check=check)


def setup_network() -> None:
    """The bridge with the node's address, forwarding and masquerading of the pod network."""
    link = _run("ip", "-j", "link", "show", BRIDGE, check=False)
    if link.returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = json.loads(_run("ip", "-j", "-4", "addr", "show", "dev", BRIDGE).stdout or "[]")
    have = {a["local"] for entry in addrs for a in entry.get("addr_info", [])}
    if NODE_IP not in have:
        prefix = ipaddress.ip_network(POD_CIDR).prefixlen
        _run("ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _write_sysctl("net.ipv4.ip_forward", "1")
    _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
    # FORWARD may default to DROP (Docker sets that): accept traffic from and to the pod bridge.
    _ensure_chain("filter", "FORWARD", f"{CHAIN_PREFIX}FORWARD", [["-i", BRIDGE], ["-o", BRIDGE]], "ACCEPT")
    # Pods reach the outside world (an LLM endpoint) with the host's address.
    _ensure_chain(
        "nat",
        "POSTROUTING",
        f"{CHAIN_PREFIX}POSTROUTING",
        [["-s", POD_CIDR, "!", "-d", POD_CIDR]],
        "MASQUERADE",
    )


def _ensure_chain(table: str, parent: str, chain: str, matches: list[list[str]], target: str) -> None:
    if _iptables("-n", "-L", chain, table=table, check=False).returncode != 0:
        _iptables("-N", chain, table=table)
    _iptables("-F", chain, table=table)
    for match in matches:
        _iptables("-A", chain, *match, "-m", "comment", "--comment", "agentry local node", "-j", target,
                  table=table)  # fmt: skip
    if _iptables("-C", parent, "-j", chain, table=table, check=False).returncode != 0:
        _iptables("-I", parent, "1", "-j", chain, table=table)


def _remove_chains(binary: str, prefixes: tuple[str, ...]) -> None:
    """Delete every chain whose name starts with one of prefixes, and the rules jumping to them."""
    if shutil.which(binary) is None:
        return
    for table in ("filter", "nat", "mangle"):
        dump = _run(binary, "-w", "5", "-t", table, "-S", check=False)
        if dump.returncode != 0:
            continue
        lines = dump.stdout.splitlines()
        chains = [
            ln.split()[1] for ln in lines if ln.startswith("-N ") and ln.split()[1].startswith(prefixes)
        ]
        if not chains:
            continue
        for line in lines:
            parts = shlex.split(line)
            if parts[0] == "-A" and "-j" in parts and parts[parts.index("-j") + 1] in chains:
                if parts[1] in chains:
                    continue  # flushed with its chain
                _run(binary, "-w", "5", "-t", table, "-D", *parts[1:], check=False)
        for chain in chains:
            _run(binary, "-w", "5", "-t", table, "-F", chain, check=False)
        for chain in chains:
            _run(binary, "-w", "5", "-t", table, "-X", chain, check=False)


# -- cleanup ----------------------------------------------------------------------------------------


def _our_shims() -> list[int]:
    """containerd shims (and anything else) started for our containerd: found by its socket path."""
    sock = str(containerd_socket())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if sock.encode() in argv and argv and b"containerd" in argv[0]:
            pids.append(int(proc.name))
    return pids


def shim_pids() -> list[int]:
    return _our_shims()


def _our_mounts() -> list[str]:
    """Mount points under the node's directories, deepest first."""
    roots = (str(NODE_ROOT), str(NODE_RUN))
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(roots):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _rmdir_tree(path: Path) -> None:
    """Remove a tree of empty directories (cgroups), deepest first."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            _rmdir_tree(child)
    with contextlib.suppress(OSError):
        path.rmdir()


def _our_cgroups() -> list[Path]:
    """The node's cgroup trees: `/agentry` in every v1 hierarchy, and at the v2 root."""
    base = Path("/sys/fs/cgroup")
    return [base / CGROUP_ROOT, *(h / CGROUP_ROOT for h in base.glob("*"))]


def _pod_pids() -> set[int]:
    """Every process in the node's cgroups, from each directory's cgroup.procs."""
    pids: set[int] = set()
    for root in _our_cgroups():
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids - {os.getpid()}


def kill_pod_processes() -> int:
    """SIGKILL what still runs in the node's cgroups (`/agentry`): pods whose kubelet and shims are
    gone (a killed `up`, a session that ended) keep running, reparented to PID 1, until this."""
    killed: set[int] = set()
    deadline = time.monotonic() + 10
    while (pids := _pod_pids()) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.1)
    return len(killed)


def crictl(assets: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(str(assets / "crictl"), f"--runtime-endpoint=unix://{containerd_socket()}", "--timeout=30s",
                *args, check=check)  # fmt: skip


def remove_all_pods(assets: Path) -> int:
    """Stop and remove every pod sandbox (CNI releases its address); containerd must be running."""
    ids = crictl(assets, "pods", "-q", check=False).stdout.split()
    if ids:
        crictl(assets, "stopp", *ids, check=False)
        crictl(assets, "rmp", "-f", *ids, check=False)
    return len(ids)


def kill_shims() -> int:
    pids = _our_shims()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _our_shims() and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(pids)


def leftovers() -> list[str]:
    """What a node that is not running left on the host (for `agentry-dev status`)."""
    found = []
    if _our_shims():
        found.append(f"{len(_our_shims())} containerd shim process(es)")
    if _our_mounts():
        found.append(f"{len(_our_mounts())} mount(s) under {NODE_ROOT} or {NODE_RUN}")
    if pods := _pod_pids():
        found.append(f"{len(pods)} pod process(es) in cgroup /{CGROUP_ROOT}")
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"interface {BRIDGE}")
    chains = [
        ln.split()[1]
        for table in ("filter", "nat")
        for ln in _iptables("-S", table=table, check=False).stdout.splitlines()
        if ln.startswith("-N ") and ln.split()[1].startswith((CHAIN_PREFIX, "KUBE-", "CNI-"))
    ]
    if chains:
        found.append(f"{len(chains)} iptables chain(s) ({', '.join(sorted(set(chains))[:4])}, ...)")
    return found


def cleanup() -> list[str]:
    """Remove what a node left on the host: shims, mounts, pod state, interfaces, iptables rules.

    Safe to run at any time the node is not running (the caller holds the node lock). Returns what
    it removed, for the log.
    """
    done: list[str] = []
    shims = kill_shims()
    if shims:
        done.append(f"killed {shims} leftover containerd shim(s)")
    pods = kill_pod_processes()
    if pods:
        done.append(f"killed {pods} leftover pod process(es)")
    mounts = _our_mounts()
    for point in mounts:
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    if mounts:
        done.append(f"unmounted {len(mounts)} leftover mount(s)")
    # Stale pod state: the next kubelet starts from nothing (images in containerd's root stay).
    for stale in (NODE_ROOT / "kubelet", NODE_ROOT / "cni" / "networks", NODE_RUN / "containerd"):
        if stale.exists():
            shutil.rmtree(stale, ignore_errors=True)
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(NODE_ROOT)):
                link.unlink()
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        _run("ip", "link", "delete", BRIDGE, check=False)
        done.append(f"deleted interface {BRIDGE}")
    # kube-proxy's and the kubelet's chains (what `kube-proxy --cleanup` removes), ours, CNI's.
    for binary in ("iptables", "ip6tables"):
        _remove_chains(binary, (CHAIN_PREFIX, "KUBE-", "CNI-"))
    for tree in _our_cgroups():
        _rmdir_tree(tree)
    return done


# -- the node ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """containerd, kubelet and kube-proxy for `plane` (started with node_ip=NODE_IP)."""

    workdir: Path
    plane: ControlPlane
    assets: Path
    procs: list[Proc] = field(default_factory=list, repr=False)

    def start(self, say: Say, images: BuiltImages | None = None, timeout: float = 120) -> Node:
        """Start containerd, import the images, then start the kubelet and kube-proxy.

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
        from .images import coredns_image, load_docker_image, pause_image  # images.py imports us

        for image in (pause_image(self.assets), coredns_image(self.assets)):
            image.ensure(self.assets, say)
        if images is not None:
            for tag in images.tags.values():
                if not load_docker_image(self.assets, tag, images.docker_host, say):
                    say(f"    {tag}: the node has this image already")
        self._start_kubelet(timeout)
        self._start_kube_proxy(timeout)
        return self

    # containerd -------------------------------------------------------------------------------

    def _write_cni_config(self) -> None:
        conf_dir = NODE_ROOT / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "agentry",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "isDefaultGateway": True,
                    "ipMasq": False,  # AGENTRY-POSTROUTING masquerades the whole pod network
                    "hairpinMode": True,  # a pod reaching itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "dataDir": str(NODE_ROOT / "cni" / "networks"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }
        (conf_dir / "10-agentry.conflist").write_text(json.dumps(conflist, indent=2))

    def _start_containerd(self, timeout: float) -> None:
        root, state = NODE_ROOT / "containerd", NODE_RUN / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{containerd_socket()}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = false
  # Lowering a process' oom_score_adj (the kubelet asks -998 for sandboxes) needs CAP_SYS_RESOURCE,
  # which sandboxed machines (VMs, containers) often drop: cap it at containerd's own value instead.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{NODE_ROOT / "cni" / "net.d"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{NODE_ROOT / "opt"}"
"""
        path = self.workdir / "containerd.toml"
        path.write_text(config)
        proc = Proc(
            "containerd",
            ["containerd", "--config", str(path), "--log-level", "warn"],
            self.workdir / "containerd.log",
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
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            # cgroup v1: the kubelet expects its cgroupRoot to exist in every hierarchy.
            if hierarchy.is_dir() and not (hierarchy / "cgroup.controllers").exists():
                with contextlib.suppress(OSError):
                    (hierarchy / CGROUP_ROOT).mkdir(exist_ok=True)

        # The kubelet's port goes in its config: a quiet port, started again on another if taken.
        def on(ports: tuple[int, ...]) -> None:
            (port,) = ports
            config = {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "address": NODE_IP,
                "port": port,
                "readOnlyPort": 0,
                "healthzBindAddress": "127.0.0.1",
                "healthzPort": 0,  # no healthz server (nothing reads it): no port to race for
                "tlsCertFile": str(serving.cert),
                "tlsPrivateKeyFile": str(serving.key),
                "authentication": {
                    "anonymous": {"enabled": False},
                    "webhook": {"enabled": True},
                    "x509": {"clientCAFile": str(pki.ca.cert)},
                },
                "authorization": {"mode": "Webhook"},
                "containerRuntimeEndpoint": f"unix://{containerd_socket()}",
                "cgroupDriver": "cgroupfs",  # containerd's runc uses cgroupfs (SystemdCgroup = false)
                "cgroupRoot": f"/{CGROUP_ROOT}",
                "failCgroupV1": False,
                "failSwapOn": False,
                "clusterDNS": [CLUSTER_DNS],
                "clusterDomain": CLUSTER_DOMAIN,
                "resolvConf": "/etc/resolv.conf",
                "podLogsDir": str(NODE_ROOT / "pod-logs"),
                "volumePluginDir": str(NODE_ROOT / "volume-plugins"),
                "rotateCertificates": False,
                "serializeImagePulls": False,
                # A shared development machine: never evict pods or delete the imported images because
                # the disk is fuller than a production node would like (preflight checks free space).
                "evictionHard": {
                    "memory.available": "100Mi",
                    "nodefs.available": "1%",
                    "imagefs.available": "1%",
                    "nodefs.inodesFree": "1%",
                },
                "imageGCHighThresholdPercent": 100,
                "imageGCLowThresholdPercent": 99,
                "maxPods": 110,
                "shutdownGracePeriod": "0s",
                "logging": {"verbosity": 1},
            }
            path = self.workdir / "kubelet.yaml"
            path.write_text(yaml.safe_dump(config))
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
            config = {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": str(kubeconfig)},
                "mode": "iptables",
                "clusterCIDR": POD_CIDR,
                "hostnameOverride": NODE_NAME,
                "bindAddress": NODE_IP,
                "healthzBindAddress": f"127.0.0.1:{healthz}",
                "metricsBindAddress": f"127.0.0.1:{metrics}",
                "nodePortAddresses": [f"{NODE_IP}/32"],
                # Leave the machine's conntrack sysctls and route_localnet alone.
                "conntrack": {
                    "maxPerCore": 0,
                    "min": 0,
                    "tcpEstablishedTimeout": "0s",
                    "tcpCloseWaitTimeout": "0s",
                },
                "iptables": {"localhostNodePorts": False},
                "logging": {"verbosity": 1},
            }
            path = self.workdir / "kube-proxy.yaml"
            path.write_text(yaml.safe_dump(config))
            proxy = Proc(
                "kube-proxy",
                [str(self.assets / "kube-proxy"), f"--config={path}"],
                self.workdir / "kube-proxy.log",
            ).start()
            proxy.wait_ready(
                lambda: (
                    f"-d {KUBERNETES_SERVICE_IP}/32" in _run("iptables-save", "-t", "nat", check=False).stdout
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
