"""The pod's process budget: a tool that uses it up (a fork bomb) ends the run `pid_limit`.

The kubelet caps each pod's tasks (`podPidsLimit`, the pids cgroup). At the cap every fork() in the
pod fails with EAGAIN, the runtime's own threads included, and the run would limp on or hang. As the
container's PID 1 the runtime watches the pids cgroup it can see; at the first refused fork it kills
every other process of the container (`kill(-1)` holds the task list against new forks, so a bomb
cannot outrun it), reaps them (zombies still hold their PIDs), and stops the run. The watch is a
task on the run's event loop: it needs no new thread or process, so it works when none can start.

Which counter says "a fork was refused" depends on the cgroup version and kernel: `pids.events`
(`max N`) counts the forks refused in the container's own cgroup on cgroup v1 and on v2 kernels
before 6.13; since 6.13, v2 counts only where the limit sits (the pod, not visible from the
container). So where the container holds many tasks, a spawn of /bin/true asks the kernel directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

from .hardening import end_strays

CGROUP_DIRS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))  # v1, then v2 (own namespace)
EVENT_FILES = ("pids.events", "pids.events.local")
POLL_SECONDS = 0.5
PROBE_FLOOR = 64  # tasks in the container before a probe spawn checks the budget itself
KILL_SECONDS = 5.0  # kill and reap until nothing else is left, at most this long


def pids_dir() -> Path | None:
    """The container's pids cgroup directory (None where there is none to read)."""
    return next((d for d in CGROUP_DIRS if (d / "pids.current").is_file()), None)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def refused_forks(directory: Path) -> int:
    """Forks the kernel refused so far, by the `max` counters of pids.events and pids.events.local."""
    total = 0
    for name in EVENT_FILES:
        for line in _read(directory / name).splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                total += int(value)
    return total


def tasks(directory: Path) -> int:
    value = _read(directory / "pids.current").strip()
    return int(value) if value.isdigit() else 0


def spawn_refused() -> bool:
    """True when the kernel refuses a new process (EAGAIN): the budget is used up right now."""
    try:
        pid = os.posix_spawn("/bin/true", ["true"], {})
    except OSError as err:
        return err.errno == errno.EAGAIN
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return False


def others_alive() -> bool:
    """Any process in the container but this one (PID 1), zombies included."""
    try:
        return any(name.isdigit() and name != "1" for name in os.listdir("/proc"))
    except OSError:
        return False


def end_all_others(deadline_seconds: float = KILL_SECONDS) -> None:
    """SIGKILL every other process of the container and reap them, until none is left (or time is up)."""
    end = time.monotonic() + deadline_seconds
    while True:
        end_strays()
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        if not others_alive() or time.monotonic() > end:
            return
        time.sleep(0.02)


class PidGuard:
    """Watches one pids cgroup; `note` says why the run was stopped once it tripped."""

    def __init__(
        self,
        directory: Path,
        on_trip: Callable[[str], None],
        *,
        poll_seconds: float = POLL_SECONDS,
        probe: Callable[[], bool] = spawn_refused,
        kill: Callable[[], None] = end_all_others,
    ) -> None:
        self.directory = directory
        self.on_trip = on_trip
        self.poll_seconds = poll_seconds
        self.probe = probe
        self.kill = kill
        self.baseline = refused_forks(directory)
        self.note: str | None = None

    @classmethod
    def for_pod(cls, on_trip: Callable[[str], None]) -> PidGuard | None:
        """A guard in a pod (PID 1 with a pids cgroup); None anywhere else, e.g. a local run, where
        killing "every other process" would mean the user's own."""
        directory = pids_dir()
        if os.getpid() != 1 or directory is None:
            return None
        return cls(directory, on_trip)

    def exhausted(self) -> str | None:
        """Why the budget is used up, or None while it is not."""
        refused = refused_forks(self.directory) - self.baseline
        if refused > 0:
            return f"the kernel refused {refused} fork(s) in the run's container"
        count = tasks(self.directory)
        if count >= PROBE_FLOOR and self.probe():
            return f"no process could start with {count} tasks in the run's container"
        return None

    def check(self) -> bool:
        """Look once; trip (kill, reap, stop the run) when the budget is used up."""
        if self.note is not None:
            return True
        why = self.exhausted()
        if why is None:
            return False
        self.note = (
            f"{why} at the pod's process limit (the kubelet's podPidsLimit); every other process of the "
            "run was killed"
        )
        self.kill()
        self.on_trip(self.note)
        return True

    async def watch(self) -> None:
        """Look every poll_seconds until tripped (cancel it when the run ends)."""
        while True:
            if self.check():
                return
            await asyncio.sleep(self.poll_seconds)
