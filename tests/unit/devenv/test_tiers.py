"""`make test`'s order (agentry_localcluster.tiers): steps wait for their builds and the steps they come
after, others run side by side, a failed build stops only what needs it, and every failure counts."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agentry_localcluster.tiers import Step, cpu_shares, cpu_times, pipeline

pytestmark = pytest.mark.unit


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _touch(path: Path) -> tuple[str, ...]:
    return _py(f"import pathlib; pathlib.Path({str(path)!r}).touch()")


def _builds(log: Path, fail: str | None = None) -> Callable[[str], tuple[str, ...]]:
    def build(tier: str) -> tuple[str, ...]:
        code = f"open({str(log)!r}, 'a').write({tier!r} + '\\n')"
        return _py(code + ("; raise SystemExit(1)" if tier == fail else ""))

    return build


def test_steps_run_after_their_builds_and_without_building_again(tmp_path: Path) -> None:
    log, seen = tmp_path / "builds", tmp_path / "seen"
    check = f"import os; open({str(seen)!r}, 'a').write(open({str(log)!r}).read().split()[-1]"
    check += " + ':' + os.environ.get('AGENTRY_NO_BUILD', '') + '\\n')"
    steps = (Step("u", _py(check), "unit"), Step("e", _py(check), "e2e", after=("u",)))
    assert asyncio.run(pipeline(steps, _builds(log))) == 0
    # Each step saw its own build (and maybe later ones) finished, and was told not to build.
    lines = seen.read_text().split()
    assert lines[0] in ("unit:1", "integration:1", "e2e:1")
    assert lines[1] == "e2e:1"


def test_steps_with_nothing_between_them_run_side_by_side(tmp_path: Path) -> None:
    """Each step waits for the other's mark: run one after the other, the first would time out."""
    a, b = tmp_path / "a", tmp_path / "b"
    wait = (
        "import pathlib, time, sys\nfor _ in range(600):\n    if pathlib.Path({p!r}).exists(): sys.exit(0)\n"
    )
    wait += "    time.sleep(0.05)\nsys.exit(1)"
    one = _py(f"import pathlib; pathlib.Path({str(a)!r}).touch()\n" + wait.format(p=str(b)))
    two = _py(f"import pathlib; pathlib.Path({str(b)!r}).touch()\n" + wait.format(p=str(a)))
    steps = (Step("one", one), Step("two", two))
    assert asyncio.run(pipeline(steps, _builds(tmp_path / "log"))) == 0


def test_a_step_starts_only_after_the_steps_it_comes_after_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`late` checks that `early` (slow, and failing) wrote its mark; side by side it would not have."""
    mark = tmp_path / "mark"
    early = _py(f"import pathlib, time; time.sleep(0.5); pathlib.Path({str(mark)!r}).touch(); exit(2)")
    late = _py(f"import pathlib, sys; sys.exit(0 if pathlib.Path({str(mark)!r}).exists() else 1)")
    steps = (Step("late", late, after=("early",)), Step("early", early))
    rc = asyncio.run(pipeline(steps, _builds(tmp_path / "log")))
    out = capsys.readouterr().out
    assert re.search(r"early: \d+ s \(exit 2\)", out)
    assert re.search(r"late: \d+ s \(exit 0\)", out)  # it saw the mark: it started after early ended
    assert rc == 1 and "failed: early\n" in out
    with pytest.raises(ValueError, match="nowhere"):
        asyncio.run(pipeline((Step("x", late, after=("nowhere",)),), _builds(tmp_path / "log")))


def test_a_failed_build_skips_what_needs_it_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = tmp_path / "ran"
    steps = (
        Step("lint", _touch(ran / "lint")),
        Step("unit", _touch(ran / "unit"), "unit"),
        Step("integration", _touch(ran / "integration"), "integration", after=("unit",)),
        Step("e2e", _touch(ran / "e2e"), "e2e"),
    )
    ran.mkdir()
    rc = asyncio.run(pipeline(steps, _builds(tmp_path / "log", fail="integration")))
    assert rc == 1
    assert sorted(p.name for p in ran.iterdir()) == ["lint", "unit"]
    out = capsys.readouterr().out
    assert "integration: not run, its one-time builds failed" in out
    assert "e2e: not run" in out
    assert "failed: builds for integration, e2e, integration" in out


def test_a_failed_step_fails_the_run_but_the_others_still_run(tmp_path: Path) -> None:
    after = Step("after", _touch(tmp_path / "after"), after=("bad",))
    steps = (Step("bad", _py("raise SystemExit(3)")), after)
    assert asyncio.run(pipeline(steps, _builds(tmp_path / "log"))) == 1
    assert (tmp_path / "after").exists()


def test_modules_marked_long_are_collected_first_and_stay_whole() -> None:
    from tests.conftest import pytest_collection_modifyitems

    class Item:
        def __init__(self, nodeid: str, *marks: str) -> None:
            self.nodeid, self.marks = nodeid, {"integration", *marks}

        def get_closest_marker(self, name: str) -> object | None:
            return name if name in self.marks else None

    items = [
        Item("a.py::1"),
        Item("a.py::2"),
        Item("b.py::1", "long"),
        Item("b.py::2", "long"),
        Item("c.py::1"),
    ]
    pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == ["b.py::1", "b.py::2", "a.py::1", "a.py::2", "c.py::1"]


def test_each_failed_steps_failures_are_printed_again_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI log is read by its tail: the FAILED lines of a failed pytest step, else its last lines."""
    pytest_like = "print('x::a PASSED'); print('FAILED t.py::b - boom'); print('ERROR t.py::c'); "
    pytest_like += "print('filler\\n' * 100); print('1 failed, 1 error in 3s'); raise SystemExit(1)"
    tail_only = "print('\\n'.join(f'line {i}' for i in range(100))); raise SystemExit(2)"
    steps = (Step("tests", _py(pytest_like)), Step("lint", _py(tail_only)), Step("fine", _py("pass")))
    assert asyncio.run(pipeline(steps, _builds(tmp_path / "log"))) == 1
    end = capsys.readouterr().out
    tests = end.split("[make test] tests failed with:\n")[1].splitlines()
    assert tests[:3] == ["  FAILED t.py::b - boom", "  ERROR t.py::c", "  1 failed, 1 error in 3s"]
    lint = end.split("[make test] lint failed with:\n")[1].split("[make test]")[0].splitlines()
    assert lint == [f"  line {i}" for i in range(60, 100)]
    assert "fine failed" not in end


def test_the_runs_cpu_is_shared_into_busy_idle_and_the_hosts_steal() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    before = cpu_times("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    after = cpu_times("cpu  700 0 150 1000 30 0 25 135 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert before["steal"] == 35 and after["user"] == 700  # the machine's line, not a core's
    # Over the run: user 600, system 100, softirq 20 (busy 720); idle 200 + iowait 20; steal 100.
    assert cpu_shares(before, after) == "CPU 69 % busy, 21 % idle, 10 % steal"
