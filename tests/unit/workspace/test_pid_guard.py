"""A tool that uses up the pod's process budget (a fork bomb) ends the run `pid_limit`: the runtime,
as the container's PID 1, sees the refused forks in its pids cgroup, kills and reaps every other
process, and reports it (pidguard.py).

The last test is a real fork bomb: PID 1 of a new PID namespace (`unshare` with its own /proc, as
root, like a container) in a pids cgroup of 48 tasks runs the guard while a Python bomb whose
children leave its process group (setsid) breeds; the guard must stop it and leave nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agentry_workspace.app import pid_limit_outcome
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.pidguard import PROBE_FLOOR, PidGuard, refused_forks

pytestmark = pytest.mark.unit


def _cgroup(tmp_path: Path, current: int = 3, refused: int = 0, local: str | None = None) -> Path:
    (tmp_path / "pids.current").write_text(f"{current}\n")
    (tmp_path / "pids.events").write_text(f"max {refused}\n")
    if local is not None:
        (tmp_path / "pids.events.local").write_text(local)
    return tmp_path


class Recorder:
    def __init__(self) -> None:
        self.kills = 0
        self.notes: list[str] = []

    def kill(self) -> None:
        self.kills += 1

    def stop(self, note: str) -> None:
        self.notes.append(note)


def _guard(directory: Path, rec: Recorder, probe: bool = False) -> PidGuard:
    return PidGuard(directory, rec.stop, probe=lambda: probe, kill=rec.kill)


def test_a_refused_fork_kills_every_other_process_and_stops_the_run(tmp_path: Path) -> None:
    cgroup, rec = _cgroup(tmp_path, refused=2), Recorder()
    guard = _guard(cgroup, rec)  # forks refused before the run are not the run's
    assert not guard.check() and rec.kills == 0 and rec.notes == []
    (cgroup / "pids.events").write_text("max 9\n")
    assert guard.check()
    assert rec.kills == 1 and rec.notes == [guard.note]
    assert guard.note is not None and "podPidsLimit" in guard.note and "refused 7 fork(s)" in guard.note
    assert guard.check() and rec.kills == 1  # tripped once: the later looks change nothing


def test_the_v2_local_counter_counts_too_and_other_lines_do_not(tmp_path: Path) -> None:
    cgroup = _cgroup(tmp_path, refused=1, local="max 2\nmax.imposed 40\n")
    assert refused_forks(cgroup) == 3


def test_where_no_counter_moves_a_spawn_asks_the_kernel_once_the_container_is_busy(tmp_path: Path) -> None:
    rec = Recorder()
    quiet = _guard(_cgroup(tmp_path, current=PROBE_FLOOR - 1), rec, probe=True)
    assert not quiet.check()  # few tasks: no probe spawned at all
    (tmp_path / "pids.current").write_text(f"{PROBE_FLOOR}\n")
    assert not _guard(tmp_path, rec, probe=False).check()  # busy, but the kernel still forks
    busy = _guard(tmp_path, rec, probe=True)
    assert busy.check() and busy.note is not None and "no process could start" in busy.note


def test_outside_a_pod_there_is_no_guard() -> None:
    assert os.getpid() != 1 and PidGuard.for_pod(lambda note: None) is None


def test_a_tripped_guard_turns_the_runs_outcome_into_pid_limit(tmp_path: Path) -> None:
    usage = {"inputTokens": 5, "outputTokens": 1, "costUSD": "0.01", "turns": 1}
    stopped = Outcome(StopReason.DEADLINE, "Stopped: whatever the runner saw.", usage=dict(usage))
    assert pid_limit_outcome(None, stopped) is stopped and stopped.stop_reason is StopReason.DEADLINE
    rec = Recorder()
    guard = _guard(_cgroup(tmp_path), rec)
    assert pid_limit_outcome(guard, stopped).stop_reason is StopReason.DEADLINE  # not tripped
    (tmp_path / "pids.events").write_text("max 1\n")  # a bomb still going when the run ended
    outcome = pid_limit_outcome(guard, stopped)
    assert outcome.stop_reason is StopReason.PID_LIMIT and outcome.exit_code == 15
    assert outcome.summary == f"Stopped: {guard.note}." and outcome.usage == usage


PID1 = """
import asyncio, os, sys, time
from pathlib import Path
from agentry_workspace.pidguard import PidGuard, others_alive
cgroup = Path(sys.argv[1])
(cgroup / "cgroup.procs").write_text("0")  # this process (PID 1 here) and all it forks
assert os.getpid() == 1
BOMB = '''
import os, time
def breed():
    for _ in range(200):
        try:
            if os.fork() == 0:
                os.setsid()
                breed()
                os._exit(0)
        except OSError:
            time.sleep(0.01)
    time.sleep(60)
breed()
'''
async def main():
    stops = []
    guard = PidGuard(cgroup, stops.append, poll_seconds=0.2)
    watch = asyncio.create_task(guard.watch())
    bomb = await asyncio.create_subprocess_exec(sys.executable, "-c", BOMB, start_new_session=True)
    started = time.monotonic()
    await asyncio.wait_for(watch, 30)
    took = time.monotonic() - started
    await asyncio.wait_for(bomb.wait(), 10)
    print(f"tripped after {took:.2f} s; others alive: {others_alive()}; stops: {len(stops)}")
    print(stops[0])
asyncio.run(main())
"""


def _pids_cgroup(name: str) -> Path:
    v1 = Path("/sys/fs/cgroup/pids")
    parent = v1 if v1.is_dir() else Path("/sys/fs/cgroup")
    if parent != v1:  # cgroup v2: the pids controller must be on for the root's children
        assert "pids" in (parent / "cgroup.subtree_control").read_text(), "pids controller off"
    path = parent / name
    path.mkdir()
    (path / "pids.max").write_text("48")
    return path


def test_a_real_fork_bomb_in_a_pids_cgroup_is_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test makes a PID namespace and a cgroup: run it as root"
    assert shutil.which("unshare"), "unshare (util-linux) is needed"
    (tmp_path / "pid1.py").write_text(PID1)
    cgroup = _pids_cgroup(f"agentry-test-{uuid.uuid4().hex[:8]}")
    try:
        argv = [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            sys.executable,
            str(tmp_path / "pid1.py"),
        ]
        done = subprocess.run([*argv, str(cgroup)], capture_output=True, text=True, timeout=90, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        print(done.stdout)
        assert "others alive: False; stops: 1" in done.stdout, done.stdout
        assert "podPidsLimit" in done.stdout and "refused" in done.stdout, done.stdout
        assert int((cgroup / "pids.current").read_text()) == 0
    finally:
        cgroup.rmdir()
