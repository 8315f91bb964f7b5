"""A kept workspace's size (workspace_guard.py): a run whose /workspace grows past spec.workspace.size
ends `workspace_full` (exit 18, final), measured while it runs and at its end."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from agentry_common.exitcodes import FINAL, REASONS, ExitCode
from agentry_common.workspace import ENV_WORKSPACE_LIMIT
from agentry_workspace import app
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.runner import Runner
from agentry_workspace.workspace_guard import WorkspaceGuard, used_bytes

from .fakes import FakeProvider, make_config, text, tool

pytestmark = pytest.mark.unit


def test_used_bytes_counts_every_file_once_and_follows_no_link(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / "a" / "b" / "x").write_bytes(b"x" * 300)
    (tmp_path / "y").write_bytes(b"y" * 20)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"z" * 5000)
    os.symlink(outside, tmp_path / "link")  # a link to a big tree counts as the link only
    assert 320 <= used_bytes(tmp_path) < 1000
    assert used_bytes(tmp_path / "missing") == 0


def test_the_guard_trips_once_past_the_limit(tmp_path: Path) -> None:
    notes: list[str] = []
    guard = WorkspaceGuard(tmp_path, 100, notes.append)
    (tmp_path / "f").write_bytes(b"." * 100)
    assert not guard.check() and notes == []  # at the limit is within it
    (tmp_path / "g").write_bytes(b".")
    assert guard.check() and guard.check()
    assert notes == [guard.note] and guard.note is not None
    assert "101 bytes" in guard.note and "spec.workspace.size" in guard.note


def test_only_a_kept_workspace_is_measured(tmp_path: Path) -> None:
    assert WorkspaceGuard.from_env({}, tmp_path, print) is None
    assert WorkspaceGuard.from_env({ENV_WORKSPACE_LIMIT: "x"}, tmp_path, print) is None
    guard = WorkspaceGuard.from_env({ENV_WORKSPACE_LIMIT: "2048"}, tmp_path, print)
    assert guard is not None and guard.limit == 2048


def test_the_outcome_says_workspace_full_unless_the_run_goes_on_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"." * 50)
    guard = WorkspaceGuard(tmp_path, 10, lambda _: None)
    for kept in (StopReason.INTERRUPTED, StopReason.APPROVAL_REQUIRED):
        assert guard.outcome(Outcome(kept, "x")).stop_reason is kept
    full = guard.outcome(Outcome(StopReason.END_TURN, "done", usage={"turns": 2}))
    assert full.stop_reason is StopReason.WORKSPACE_FULL and full.exit_code == ExitCode.WORKSPACE_FULL
    assert full.usage == {"turns": 2} and full.summary.startswith("Stopped: the kept workspace holds")
    assert ExitCode.WORKSPACE_FULL in FINAL and REASONS[ExitCode.WORKSPACE_FULL][0] == "WorkspaceFull"


async def test_the_watch_stops_a_run_that_grows_past_it(tmp_path: Path) -> None:
    stopped = asyncio.Event()
    guard = WorkspaceGuard(tmp_path, 10, lambda _: stopped.set())
    watch = asyncio.create_task(guard.watch())
    await asyncio.sleep(0)
    assert not stopped.is_set()
    (tmp_path / "f").write_bytes(b"." * 11)
    await asyncio.wait_for(stopped.wait(), timeout=30)  # only a bound on a failure
    await asyncio.wait_for(watch, timeout=30)
    assert guard.note is not None


@pytest.mark.parametrize("size", [64, 10_000])
def test_a_run_that_ends_past_the_size_fails_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A real run (the runner, its tools, a scripted model) whose tool writes past the limit."""
    cfg = make_config(tmp_path, env={ENV_WORKSPACE_LIMIT: "1000"})
    provider = FakeProvider(
        [tool("files", {"operation": "write", "path": "big.txt", "content": "b" * size}), text("wrote it")]
    )
    monkeypatch.setattr(app, "Runner", lambda cfg, sink: Runner(cfg, sink, providers=[provider]))
    code = app.execute(cfg, RecordingSink())
    result = json.loads(cfg.result_file.read_text())
    if size <= 1000:
        assert code == 0 and result["stopReason"] == "end_turn", result
    else:
        assert code == ExitCode.WORKSPACE_FULL, result
        assert result["stopReason"] == "workspace_full" and "10000 bytes" in result["summary"]
        assert result["usage"]["turns"] == 2  # the run's usage is kept
