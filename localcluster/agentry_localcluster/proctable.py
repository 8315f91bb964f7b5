"""What /proc says about processes and their sockets: who listens on a port, a process group's
members and sockets, whether a pid still runs."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def who_listens(port: int) -> str:
    """Best-effort description of the process listening on a TCP port (for error messages)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown process"
    return out or "unknown process"


def listener_inodes(port: int) -> set[int]:
    """Socket inodes of every TCP listener (IPv4 and IPv6, any address) on a port, from /proc/net."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(cols[9]))
    return inodes


def group_socket_inodes(pgid: int) -> set[int]:
    """Socket inodes open in any process of a process group."""
    inodes: set[int] = set()
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd.path)
                    if target.startswith("socket:["):
                        inodes.add(int(target[8:-1]))
    return inodes


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc/*/stat)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def pid_alive(pid: int) -> bool:
    """True while pid runs (a zombie, dead but not reaped yet, counts as gone)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children() -> dict[int, list[int]]:
    """pid -> its children's pids, for every process."""
    tree: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(proc.name))
    return tree


def rss(pid: int) -> int:
    """Resident memory of a process in bytes; 0 when it is gone."""
    with contextlib.suppress(OSError, ValueError):
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
