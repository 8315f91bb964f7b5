"""`make test`'s order (agentry_localcluster.tiers): steps wait for their builds, a stage's steps run side
by side, a failed build stops only what needs it, and every failure counts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agentry_localcluster.tiers import Step, pipeline

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
    stages = ((Step("u", _py(check), "unit"),), (Step("e", _py(check), "e2e"),))
    assert asyncio.run(pipeline(stages, _builds(log))) == 0
    # Each step saw its own build (and maybe later ones) finished, and was told not to build.
    lines = seen.read_text().split()
    assert lines[0] in ("unit:1", "integration:1", "e2e:1")
    assert lines[1] == "e2e:1"


def test_a_stages_steps_run_side_by_side(tmp_path: Path) -> None:
    """Each step waits for the other's mark: run one after the other, the first would time out."""
    a, b = tmp_path / "a", tmp_path / "b"
    wait = (
        "import pathlib, time, sys\nfor _ in range(600):\n    if pathlib.Path({p!r}).exists(): sys.exit(0)\n"
    )
    wait += "    time.sleep(0.05)\nsys.exit(1)"
    one = _py(f"import pathlib; pathlib.Path({str(a)!r}).touch()\n" + wait.format(p=str(b)))
    two = _py(f"import pathlib; pathlib.Path({str(b)!r}).touch()\n" + wait.format(p=str(a)))
    stages = ((Step("one", one), Step("two", two)),)
    assert asyncio.run(pipeline(stages, _builds(tmp_path / "log"))) == 0


def test_a_failed_build_skips_what_needs_it_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = tmp_path / "ran"
    stages = (
        (Step("lint", _touch(ran / "lint")), Step("unit", _touch(ran / "unit"), "unit")),
        (Step("integration", _touch(ran / "integration"), "integration"),),
        (Step("e2e", _touch(ran / "e2e"), "e2e"),),
    )
    ran.mkdir()
    rc = asyncio.run(pipeline(stages, _builds(tmp_path / "log", fail="integration")))
    assert rc == 1
    assert sorted(p.name for p in ran.iterdir()) == ["lint", "unit"]
    out = capsys.readouterr().out
    assert "integration: not run, its one-time builds failed" in out
    assert "e2e: not run" in out
    assert "failed: builds for integration, e2e, integration" in out


def test_a_failed_step_fails_the_run_but_the_others_still_run(tmp_path: Path) -> None:
    stages = ((Step("bad", _py("raise SystemExit(3)")),), (Step("after", _touch(tmp_path / "after")),))
    assert asyncio.run(pipeline(stages, _builds(tmp_path / "log"))) == 1
    assert (tmp_path / "after").exists()
