"""The CPU per module that every tier prints (tests/fixtures/cpu.py): a module is charged what the
processes it starts spend, each pytest process counts in a cgroup of its own (an xdist worker's beside
its controller's, never inside it), and cgroups left by dead runs go."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.cpu import PREFIX, Ledger, alive, own_cgroup

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_a_v1_cgroup_is_made_beside_a_workers_controller_and_dead_runs_cgroups_go(tmp_path: Path) -> None:
    controller = tmp_path / "cpuacct" / f"{PREFIX}1"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name in (f"{PREFIX}{dead.pid}", f"{PREFIX}{os.getppid()}"):
        (tmp_path / "cpuacct" / name).mkdir(parents=True)
    controller.mkdir()
    proc = tmp_path / "cgroup"
    proc.write_text(f"5:memory:/x\n2:cpuacct:/{controller.name}\n0::/\n")

    group = own_cgroup(str(proc), tmp_path)

    assert group is not None and group.home == controller and group.counter == "cpuacct.usage"
    assert group.path == tmp_path / "cpuacct" / f"{PREFIX}{os.getpid()}"  # beside, not inside
    assert (group.path / "cgroup.procs").read_text() == str(os.getpid())
    assert not (tmp_path / "cpuacct" / f"{PREFIX}{dead.pid}").exists()
    assert (tmp_path / "cpuacct" / f"{PREFIX}{os.getppid()}").exists()  # its process lives


def test_a_v2_cgroup_is_made_under_the_unified_hierarchy(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "user.slice").mkdir()
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice\n")

    group = own_cgroup(str(proc), tmp_path)

    assert group is not None and group.counter == "cpu.stat"
    assert group.path == tmp_path / "user.slice" / f"{PREFIX}{os.getpid()}"
    (group.path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    assert group.seconds() == 2.5


def test_the_ledger_lists_the_costliest_modules_first_with_the_workers_merged() -> None:
    ledger = Ledger()
    ledger.add("tests/a.py", 1.0, 2.0)
    ledger.add("tests/a.py", 1.5, 1.0)
    ledger.merge({"tests/b.py": [4.0, 3.0, 2], "tests/a.py": [0.5, 0.5, 1]})
    lines = ledger.lines(top=1)
    assert len(lines) == 1 and lines[0].endswith("tests/b.py") and lines[0].split()[0] == "4.0"
    assert ledger.modules["tests/a.py"] == [3.0, 3.5, 3]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a cgroup needs root")
def test_a_module_is_charged_the_cpu_of_the_processes_it_starts(tmp_path: Path) -> None:
    """Two workers, one module each: the one whose test burns 1.5 s in a child comes first with at
    least that, the other's 0.3 s in its own process is counted too."""
    (tmp_path / "test_child.py").write_text(
        "import subprocess, sys\n"
        f"def test_child():\n    subprocess.run([sys.executable, '-c', {BURN.format(s=1.5)!r}], check=True)\n"
    )
    (tmp_path / "test_self.py").write_text(f"def test_self():\n    exec({BURN.format(s=0.3)!r})\n")
    plugins = ("-p", "tests.fixtures.cpu", "-p", "no:cacheprovider")
    config = ("--rootdir", str(tmp_path), "-c", os.devnull)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, *config, "-n", "2", "--dist", "loadfile", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = re.findall(r"^\s*([\d.]+) s CPU .* (\S+)$", out.stdout, re.M)
    assert [Path(m).name for _, m in rows] == ["test_child.py", "test_self.py"], out.stdout
    assert float(rows[0][0]) >= 1.5 and float(rows[1][0]) >= 0.3
    assert "in 3" in out.stdout  # the controller and its two workers
    # Every process of that run has ended, and so has every cgroup it made.
    cgroups = Path("/sys/fs/cgroup").glob(f"*/{PREFIX}*")
    assert [p.name for p in cgroups if not alive(p.name.removeprefix(PREFIX))] == []
