"""Preparing this machine for the local node: Debian packages, the checks that it can run one, and
the node's network (bridge, forwarding, masquerading); and the host commands the node's code runs
(`run`, `iptables`, `crictl`)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .layout import (
    BRIDGE,
    CHAIN_PREFIX,
    CNI_BIN,
    MIN_FREE_BYTES,
    NODE_IP,
    NODE_ROOT,
    POD_CIDR,
    containerd_socket,
)
from .procs import ServerError

# What the node needs from Debian: a command (or file) -> the package providing it.
HOST_PACKAGES = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    str(CNI_BIN / "bridge"): "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ipset": "ipset",  # kube-router's NetworkPolicy sets (netpol.py)
    "ip": "iproute2",
    "mount": "mount",
}

Say = Callable[[str], None]


def run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=120)
    if check and result.returncode != 0:
        raise ServerError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def crictl(assets: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(str(assets / "crictl"), f"--runtime-endpoint=unix://{containerd_socket()}", "--timeout=30s",
                *args, check=check)  # fmt: skip


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
    routes = json.loads(run("ip", "-j", "-4", "route", "show").stdout or "[]")
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


def iptables(*args: str, table: str = "filter", check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("iptables", "-w", "5", "-t", table, *args, check=check)


def setup_network() -> None:
    """The bridge with the node's address, forwarding and masquerading of the pod network."""
    link = run("ip", "-j", "link", "show", BRIDGE, check=False)
    if link.returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = json.loads(run("ip", "-j", "-4", "addr", "show", "dev", BRIDGE).stdout or "[]")
    have = {a["local"] for entry in addrs for a in entry.get("addr_info", [])}
    if NODE_IP not in have:
        prefix = ipaddress.ip_network(POD_CIDR).prefixlen
        run("ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
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
    if iptables("-n", "-L", chain, table=table, check=False).returncode != 0:
        iptables("-N", chain, table=table)
    iptables("-F", chain, table=table)
    for match in matches:
        iptables("-A", chain, *match, "-m", "comment", "--comment", "agentry local node", "-j", target,
                  table=table)  # fmt: skip
    if iptables("-C", parent, "-j", chain, table=table, check=False).returncode != 0:
        iptables("-I", parent, "1", "-j", chain, table=table)
