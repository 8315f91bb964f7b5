"""hack/typing_bar.py: `Any` in code counts, in comments and strings not; above the ceiling it fails."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "typing_bar.py"


def _bar() -> ModuleType:
    spec = importlib.util.spec_from_file_location("typing_bar", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_code_counts() -> None:
    source = 'from typing import Any\n# Any here\nx: dict[str, Any] = {"Any": "Any"}\nAnything = 1\n'
    assert _bar().count(source) == 2


def test_above_the_ceiling_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bar = _bar()
    (tmp_path / "a.py").write_text("from typing import Any\ndef f(x: Any) -> Any: ...\n")
    (tmp_path / "b.py").write_text("x = 1\n")
    assert bar.tally(tmp_path) == {tmp_path / "a.py": 3}
    assert bar.main(tmp_path, ceiling=3) == 0
    assert bar.main(tmp_path, ceiling=2) == 1
    assert "3 `Any`" in capsys.readouterr().err


def test_the_operator_is_within_its_ceiling() -> None:
    bar = _bar()
    assert bar.main() == 0
