"""What a node leaves on the host, and removing it: containerd shims, pod processes, mounts, pod
state, the bridge, iptables chains, kube-router's ipsets and cgroups. `cleanup()` is safe whenever the
node is not running."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .host import crictl, iptables, run
from .layout import BRIDGE, CGROUP_ROOT, CHAIN_PREFIX, NODE_ROOT, NODE_RUN, containerd_socket
from .netpol import destroy_ipsets, ipsets


def _remove_chains(binary: str, prefixes: tuple[str, ...]) -> None:
    """Delete every chain whose name starts with one of prefixes, and the rules jumping to them."""
    if shutil.which(binary) is None:
        return
    for table in ("filter", "nat", "mangle"):
        dump = run(binary, "-w", "5", "-t", table, "-S", check=False)
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
                run(binary, "-w", "5", "-t", table, "-D", *parts[1:], check=False)
        for chain in chains:
            run(binary, "-w", "5", "-t", table, "-F", chain, check=False)
        for chain in chains:
            run(binary, "-w", "5", "-t", table, "-X", chain, check=False)


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
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"interface {BRIDGE}")
    chains = [
        ln.split()[1]
        for table in ("filter", "nat")
        for ln in iptables("-S", table=table, check=False).stdout.splitlines()
        if ln.startswith("-N ") and ln.split()[1].startswith((CHAIN_PREFIX, "KUBE-", "CNI-"))
    ]
    if chains:
        found.append(f"{len(chains)} iptables chain(s) ({', '.join(sorted(set(chains))[:4])}, ...)")
    if sets := ipsets():
        found.append(f"{len(sets)} ipset(s) of kube-router ({', '.join(sets[:2])}, ...)")
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
    stale_dirs = (
        NODE_ROOT / "kubelet",
        NODE_ROOT / "cni" / "networks",
        NODE_RUN / "containerd",
        NODE_RUN / "runsc",
    )
    for stale in stale_dirs:
        if stale.exists():
            shutil.rmtree(stale, ignore_errors=True)
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(NODE_ROOT)):
                link.unlink()
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        run("ip", "link", "delete", BRIDGE, check=False)
        done.append(f"deleted interface {BRIDGE}")
    # kube-proxy's and the kubelet's chains (what `kube-proxy --cleanup` removes), ours, CNI's.
    for binary in ("iptables", "ip6tables"):
        _remove_chains(binary, (CHAIN_PREFIX, "KUBE-", "CNI-"))
    # kube-router's sets, once no rule references them.
    if sets := destroy_ipsets():
        done.append(f"destroyed {sets} ipset(s) of kube-router")
    for tree in _our_cgroups():
        _rmdir_tree(tree)
    return done
