"""A process a tool leaves behind cannot rewrite the result after the runtime: as the container's PID
1 the runtime kills every other process before it writes its termination message.

Real processes: the runtime's part runs as PID 1 of a new PID namespace (`unshare`, as root, like a
container); a detached child in its own session rewrites the result file every millisecond. The
control (no `end_strays`) shows the forger wins (its text, or the file it was truncating)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import agentry_workspace.hardening as hardening

pytestmark = pytest.mark.unit

PID1 = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import hardening
result = sys.argv[2]
assert os.getpid() == 1
if os.fork() == 0:  # the stray: its own session, rewriting the result until killed
    os.setsid()
    while True:
        with open(result, "w") as fh:
            fh.write("FORGED")
        time.sleep(0.001)
time.sleep(0.2)
if sys.argv[3] == "end":
    assert hardening.end_strays()
with open(result, "w") as fh:
    fh.write("REAL")
time.sleep(0.3)
"""


def _last_result(tmp_path: Path, mode: str) -> str:
    assert os.geteuid() == 0, "this test makes a PID namespace with unshare: run it as root"
    assert shutil.which("unshare"), "unshare (util-linux) is needed"
    shutil.copy(hardening.__file__, tmp_path / "hardening.py")
    (tmp_path / "pid1.py").write_text(PID1)
    result = tmp_path / f"result-{mode}"
    argv = ["unshare", "--pid", "--fork", "--kill-child", "/usr/bin/python3", str(tmp_path / "pid1.py")]
    done = subprocess.run(
        [*argv, str(tmp_path), str(result), mode], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return result.read_text()  # PID 1 has exited: the namespace, stray included, is gone


def test_a_stray_process_cannot_rewrite_the_result_after_the_runtime(tmp_path: Path) -> None:
    # Killed with PID 1 mid-rewrite, the forger leaves its text or an empty file: never ours.
    assert _last_result(tmp_path, "control") in ("FORGED", "")
    assert _last_result(tmp_path, "end") == "REAL"


def test_outside_a_pod_nothing_is_killed() -> None:
    assert os.getpid() != 1 and hardening.end_strays() is False
