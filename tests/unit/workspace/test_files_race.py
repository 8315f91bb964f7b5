"""The files tool and a symlink race: a directory of the path swapped for a symlink to outside the
workspace *between* the check and the open. The swap is made deterministic by running it inside
the check (`confine`), right after the real check passed; before the fix the open followed it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentry_workspace.tools import ToolContext
from agentry_workspace.tools import files as files_mod
from agentry_workspace.tools.files import FilesTool

pytestmark = pytest.mark.unit


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ToolContext, Path]]:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    (workspace / "d").mkdir(parents=True)
    (workspace / "d" / "note.txt").write_text("inside")
    outside.mkdir()
    (outside / "note.txt").write_text("OUTSIDE-SECRET")
    real = files_mod.confine

    def check_then_swap(root: Path, relative: str) -> Path:
        checked = real(root, relative)  # passes: d is a real directory now
        shutil.rmtree(root / "d")
        (root / "d").symlink_to(outside)
        return checked

    monkeypatch.setattr(files_mod, "confine", check_then_swap)
    ctx = ToolContext(workspace=workspace, env={}, timeout=5, max_output=4096)
    yield ctx, outside


@pytest.mark.parametrize("operation", ["read", "list"])
async def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_followed(
    setup: tuple[ToolContext, Path], operation: str
) -> None:
    ctx, _ = setup
    path = "d/note.txt" if operation == "read" else "d"
    out = await FilesTool().run({"operation": operation, "path": path}, ctx)
    assert out.is_error and out.details.get("refused") is True, out
    assert "became a symlink" in out.content
    assert "OUTSIDE-SECRET" not in out.content and "note.txt" not in out.content.split("refused")[-1]


async def test_a_write_through_a_swapped_directory_creates_nothing_outside(
    setup: tuple[ToolContext, Path],
) -> None:
    ctx, outside = setup
    out = await FilesTool().run({"operation": "write", "path": "d/new.txt", "content": "x"}, ctx)
    assert out.is_error and out.details.get("refused") is True, out
    assert sorted(p.name for p in outside.iterdir()) == ["note.txt"]


async def test_without_a_swap_nested_paths_still_work(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path, env={}, timeout=5, max_output=4096)
    tool = FilesTool()
    wrote = await tool.run({"operation": "write", "path": "a/b/c.txt", "content": "deep"}, ctx)
    assert not wrote.is_error, wrote
    read = await tool.run({"operation": "read", "path": "a/b/c.txt"}, ctx)
    assert read.content == "deep"
    listed = await tool.run({"operation": "list", "path": "a"}, ctx)
    assert listed.content == "dir   b/"


async def test_a_symlink_loop_is_refused_not_a_crash(tmp_path: Path) -> None:
    """Path.resolve raises RuntimeError on a loop (and FileNotFoundError when a link vanishes while it
    is read, which a swapping process causes): it used to escape assess() and end the run."""
    (tmp_path / "loop").symlink_to("loop")
    ctx = ToolContext(workspace=tmp_path, env={}, timeout=5, max_output=4096)
    assessed = FilesTool().assess({"operation": "read", "path": "loop/x"}, ctx)
    assert assessed.refusal is not None and "cannot be resolved" in assessed.refusal
    out = await FilesTool().run({"operation": "read", "path": "loop"}, ctx)
    assert out.is_error and out.details.get("refused") is True and "cannot be resolved" in out.content
