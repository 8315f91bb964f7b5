"""A tool running as the runtime's UID cannot read the runtime's environment once it is hardened.

Real processes: a non-root UID (setpriv) runs the hardening module with the system Python, then a
shell child tries `/proc/$PPID/environ`. The control (not hardened) shows the read would succeed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import agentry_workspace.hardening as hardening

pytestmark = pytest.mark.unit

PROBE = """
import os, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
import hardening
# Our stdout is a file this UID owns (in a pod it is the container log): a dumpable process lets
# any same-UID process write into it through /proc/<pid>/fd/1.
fd, out = tempfile.mkstemp()
os.dup2(fd, 1)
if sys.argv[2] == "harden":
    assert hardening.forbid_inspection() and not hardening.dumpable()
child = subprocess.run(
    ["sh", "-c", "cat /proc/$PPID/environ; echo FORGED-$((6*7)) >> /proc/$PPID/fd/1"], capture_output=True
)
os.write(2, child.stdout + child.stderr + b"\\n-- our stdout --\\n" + open(out, "rb").read())
os.unlink(out)
"""


def _probe(stage: Path, mode: str) -> str:
    assert os.geteuid() == 0, "this test switches to a throwaway UID with setpriv: run it as root"
    stage.chmod(0o755)  # pytest's tmp_path is private to root; the throwaway UID must read this
    shutil.copy(hardening.__file__, stage / "hardening.py")
    (stage / "probe.py").write_text(PROBE)
    for f in stage.iterdir():
        f.chmod(0o644)
    argv = ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups", "/usr/bin/python3"]
    env = {"PATH": "/usr/bin:/bin", "RUN_TOKEN": "sk-ant-probe-0123456789"}
    done = subprocess.run(
        [*argv, str(stage / "probe.py"), str(stage), mode], capture_output=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stderr.decode(errors="replace")


def test_a_same_uid_child_cannot_read_a_hardened_runtime_environment() -> None:
    with tempfile.TemporaryDirectory(prefix="agentry-harden-") as stage:
        _check(Path(stage))


def _check(tmp_path: Path) -> None:
    control = _probe(tmp_path, "control")  # the threats are real: read the key, write our stdout
    assert "RUN_TOKEN=sk-ant-probe-0123456789" in control and "FORGED-42" in control
    hardened = _probe(tmp_path, "harden")
    assert "environ: Permission denied" in hardened and "sk-ant-probe" not in hardened
    assert "fd/1: Permission denied" in hardened and "FORGED-42" not in hardened
