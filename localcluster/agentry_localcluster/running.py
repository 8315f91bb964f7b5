"""The one local cluster of this machine: its lock and state file, and finding and stopping the
processes of a run (also of one that was killed).

One cluster per machine (the node's bridge, iptables chains and kube-proxy rules are machine-wide):
`Cluster.up` takes an exclusive lock on NODE_RUN/lock, held until `down` or until the process exits,
and writes NODE_RUN/state.json saying who runs it. `stop_running()` (`agentry-dev down`) stops the
process holding the lock and removes what it left (see host.cleanup).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .cleanup import cleanup, shim_pids
from .layout import NODE_IP, NODE_RUN
from .procs import ServerError
from .proctable import children, pid_alive, rss

LOCK = NODE_RUN / "lock"
STATE = NODE_RUN / "state.json"
Say = Callable[[str], None]


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


def acquire_lock(owner: str, workdir: Path, wait: float, say: Say) -> IO[str]:
    """Take the machine's cluster lock (waiting up to `wait` s for another run to stop), stop what a
    killed run left running, and record who runs the cluster now. The lock is held while the returned
    file stays open."""
    NODE_RUN.mkdir(parents=True, exist_ok=True)
    f = LOCK.open("a")
    _wait_for_lock(f, wait, say)
    previous = read_state()  # a run that was killed: stop what it left running
    if previous.get("workdir") and not pid_alive(int(previous.get("pid") or 0)):
        strays = run_processes(Path(str(previous["workdir"])))
        if strays:
            say(f"    stopping {len(strays)} process(es) of a killed run (pid {previous.get('pid')})")
            _terminate(list(strays))
    STATE.write_text(
        json.dumps({"pid": os.getpid(), "owner": owner, "workdir": str(workdir), "started": time.time()})
    )
    return f


def _wait_for_lock(f: IO[str], wait: float, say: Say) -> None:
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
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


def stack_processes(root_pid: int) -> dict[int, int]:
    """pid -> RSS bytes of root_pid, its descendants, and the containers of the node (via their shims)."""
    tree = children()
    todo = [root_pid, *shim_pids()]
    seen: dict[int, int] = {}
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen[pid] = rss(pid)
        todo.extend(tree.get(pid, []))
    return {pid: size for pid, size in seen.items() if size}


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
            or ("firestore" in line and f"--host={NODE_IP}" in argv)
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
    NODE_RUN.mkdir(parents=True, exist_ok=True)
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
        for line in cleanup():
            say(f"    {line}")
            stopped = True
        with contextlib.suppress(OSError):
            STATE.unlink()
    return stopped
