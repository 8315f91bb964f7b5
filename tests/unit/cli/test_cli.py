"""`agentry`: one command, a subcommand per job, each keeping its own options and exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentry_cli.main import main

pytestmark = pytest.mark.unit


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "run" in out and "doctor" in out


@pytest.mark.parametrize(("command", "option"), [("run", "--file"), ("doctor", "--gateway")])
def test_each_subcommand_has_its_own_help(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"agentry {command}" in out and option in out


def test_unknown_subcommand_and_bad_option_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy"]) == 2
    assert "deploy" in capsys.readouterr().err
    assert main(["run", "--no-such-option"]) == 2


def test_run_reports_a_missing_manifest(tmp_path: Path) -> None:
    code = main(["run", "-f", str(tmp_path / "absent.yaml"), "--input", "hi", "--workspace", str(tmp_path)])
    assert code not in (0, None)


def test_console_script_is_installed() -> None:
    agentry = Path(sys.executable).parent / "agentry"
    done = subprocess.run([str(agentry), "doctor", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--operator-url" in done.stdout
