"""What the image builds keep of what they stage (hack/wheels.sh's keep_staged and reuse_staged): a
tree under a key of its inputs, one key per name, reused only when it was kept whole."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

WHEELS_SH = Path(__file__).resolve().parents[3] / "hack" / "wheels.sh"


def _sh(cache: Path, script: str) -> subprocess.CompletedProcess[str]:
    prelude = f"set -euo pipefail; CACHE={str(cache)!r}; source {str(WHEELS_SH)!r}\n"
    return subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, check=False)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_kept_tree_is_reused_under_its_key_only(tmp_path: Path) -> None:
    cache, staged = tmp_path / "cache", tmp_path / "staged"
    (staged / "sub").mkdir(parents=True)
    (staged / "a.whl").write_text("a")
    (staged / "sub" / "b.js").write_text("b")
    assert _sh(cache, f"keep_staged wheels-api k1 {staged}").returncode == 0

    again = tmp_path / "again"
    assert _sh(cache, f"reuse_staged wheels-api k1 {again}").returncode == 0
    assert _tree(again) == {"a.whl": "a", "sub/b.js": "b"}
    assert (again / "a.whl").stat().st_ino == (cache / "staged/wheels-api/k1/a.whl").stat().st_ino

    other = tmp_path / "other"
    assert _sh(cache, f"reuse_staged wheels-api k2 {other}").returncode != 0  # other inputs
    assert _sh(cache, f"reuse_staged wheels-gateway k1 {other}").returncode != 0  # another image


def test_a_new_key_replaces_the_old_tree(tmp_path: Path) -> None:
    cache, staged = tmp_path / "cache", tmp_path / "staged"
    staged.mkdir()
    (staged / "old.whl").write_text("old")
    assert _sh(cache, f"keep_staged claude-code k1 {staged}").returncode == 0
    (staged / "old.whl").unlink()
    (staged / "new.whl").write_text("new")
    assert _sh(cache, f"keep_staged claude-code k2 {staged}").returncode == 0

    assert _sh(cache, f"reuse_staged claude-code k1 {tmp_path / 'one'}").returncode != 0
    assert _sh(cache, f"reuse_staged claude-code k2 {tmp_path / 'two'}").returncode == 0
    assert _tree(tmp_path / "two") == {"new.whl": "new"}
    assert sorted(p.name for p in (cache / "staged" / "claude-code").iterdir()) == ["k2", "k2.done"]


def test_a_tree_whose_keeping_did_not_finish_is_not_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "staged" / "mcp-servers" / "k1").mkdir(parents=True)  # no k1.done: cut off midway
    (cache / "staged" / "mcp-servers" / "k1" / "half.js").write_text("half")
    assert _sh(cache, f"reuse_staged mcp-servers k1 {tmp_path / 'ctx'}").returncode != 0
