"""Tools on their own: workspace confinement, subprocess limits, the http allow-list, the policy."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentry_common.models import AgentSpec, Risk
from agentry_workspace.policy import assess_call
from agentry_workspace.tools import ToolContext, ToolInputError, enabled_tools
from agentry_workspace.tools.files import FilesTool, PathEscape, confine
from agentry_workspace.tools.http import check_url, host_allowed
from agentry_workspace.tools.process import PythonTool, ShellTool

from .fakes import alive

pytestmark = pytest.mark.unit


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ToolContext(
        workspace=ws,
        env={"PATH": os.environ["PATH"], "MARK": "visible"},
        timeout=10,
        max_output=1000,
        allowed_hosts=("api.example.com", "*.corp.example", "127.0.0.1:8080"),
    )


# -- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside.txt", "'..'"),
        ("a/../../outside.txt", "'..'"),
        ("escape/passwd", "outside the workspace"),
        ("escape", "outside the workspace"),
        ("", "empty"),
    ],
)
def test_path_escapes_are_refused(ctx: ToolContext, path: str, why: str) -> None:
    (ctx.workspace / "escape").symlink_to("/etc")
    with pytest.raises(PathEscape, match=why):
        confine(ctx.workspace, path)
    assessment = FilesTool().assess({"operation": "read", "path": path or "x\x00"}, ctx)
    assert assessment.refusal is not None


async def test_files_round_trip_and_inner_symlinks(ctx: ToolContext) -> None:
    files = FilesTool()
    out = await files.run({"operation": "write", "path": "d/e/f.txt", "content": "héllo"}, ctx)
    assert not out.is_error and "wrote 6 bytes" in out.content
    (ctx.workspace / "alias").symlink_to(ctx.workspace / "d")  # stays inside: allowed
    read = await files.run({"operation": "read", "path": "alias/e/f.txt"}, ctx)
    assert read.content == "héllo"
    listing = await files.run({"operation": "list", "path": "."}, ctx)
    assert "dir   d/" in listing.content and "link  alias" in listing.content


async def test_files_run_refuses_even_without_the_policy(ctx: ToolContext, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    (ctx.workspace / "x").symlink_to(tmp_path / "outside.txt")
    out = await FilesTool().run({"operation": "read", "path": "x"}, ctx)
    assert out.is_error and "secret" not in out.content
    out = await FilesTool().run({"operation": "write", "path": "x", "content": "pwned"}, ctx)
    assert out.is_error and (tmp_path / "outside.txt").read_text() == "secret"


async def test_files_bad_arguments_are_reported(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="operation"):
        await FilesTool().run({"operation": "delete", "path": "a"}, ctx)
    with pytest.raises(ToolInputError, match="content"):
        await FilesTool().run({"operation": "write", "path": "a"}, ctx)


# -- shell and python ---------------------------------------------------------------------------


async def test_shell_runs_in_the_workspace_with_exit_code(ctx: ToolContext) -> None:
    out = await ShellTool().run({"command": "pwd; echo $MARK; exit 3"}, ctx)
    assert out.is_error and out.details["exitCode"] == 3
    assert out.content.splitlines() == ["exit code 3", str(ctx.workspace), "visible"]


async def test_long_output_keeps_head_and_tail_with_a_marker(ctx: ToolContext) -> None:
    cmd = "echo START; head -c 200000 /dev/zero | tr '\\0' x; echo; echo END"
    out = await ShellTool().run({"command": cmd}, ctx)
    assert "START" in out.content and out.content.rstrip().endswith("END")
    assert "bytes truncated ...]" in out.content
    assert len(out.content.encode()) < 1200
    assert out.details["truncatedBytes"] > 190_000


@pytest.mark.timeout(120)  # a hang guard only: without the kill the shell waits ten hours
async def test_timeout_kills_the_whole_process_group(ctx: ToolContext) -> None:
    # The shell waits on a child that would sleep for ten hours and holds the output pipe open: the
    # tool can only return because the timeout killed the group. The oracle is what was killed.
    cmd = "echo $$ > shell; sleep 36000 & echo $! > child; echo started; wait"
    try:
        out = await ShellTool().run({"command": cmd, "timeout_seconds": 0.5}, ctx)
        assert out.is_error and out.content.startswith("[timed out after 0.5s; process killed]")
        assert out.details["timedOut"] is True and "exitCode" not in out.details
        assert "started" in out.content
        assert not alive(int((ctx.workspace / "shell").read_text()))
        assert not alive(int((ctx.workspace / "child").read_text()))
    finally:  # leave nothing behind when the assertions fail
        for name in ("shell", "child"):
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                pid = int((ctx.workspace / name).read_text())
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


async def test_python_tool_runs_code_from_stdin(ctx: ToolContext) -> None:
    code = "import os, sys\nprint(sys.version_info[0], os.getcwd())\nopen('out.txt','w').write('ok')"
    out = await PythonTool().run({"code": code}, ctx)
    assert not out.is_error, out.content
    assert f"3 {ctx.workspace}" in out.content
    assert (ctx.workspace / "out.txt").read_text() == "ok"
    failing = await PythonTool().run({"code": "raise SystemExit('bad')"}, ctx)
    assert failing.is_error and "bad" in failing.content
    assert PythonTool().spec(ctx).name == "python" and sys.executable


# -- http allow-list ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/v1", True),
        ("https://API.EXAMPLE.COM./v1", True),
        ("http://api.example.com:9999/", False),  # no port in the entry: https on 443 only
        ("https://evil.example.com/", False),
        ("https://api.example.com.evil.net/", False),
        ("https://api.example.com@evil.net/", False),  # userinfo trick: the host is evil.net
        ("https://x.corp.example/", True),
        ("https://a.b.corp.example/", True),
        ("https://corp.example/", False),  # wildcard does not include the apex
        ("https://notcorp.example/", False),
        ("http://127.0.0.1:8080/x", True),
        ("http://127.0.0.1:8081/x", False),
    ],
)
def test_allow_list_matching(url: str, allowed: bool) -> None:
    hosts = ("api.example.com", "*.corp.example", "127.0.0.1:8080")
    assert host_allowed(httpx.URL(url), hosts) is allowed
    assert (check_url(url, hosts) is None) is allowed


def test_non_http_schemes_are_refused() -> None:
    assert "scheme" in (check_url("file:///etc/passwd", ("api.example.com",)) or "")
    assert "not in the agent's http.allowedHosts" in (check_url("https://x.io", ()) or "")


# -- the policy ---------------------------------------------------------------------------------


def _spec(**extra: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        {"instructions": "x", "model": {"name": "m"}, "tools": ["shell", "files", "http"], **extra}
    )


@pytest.mark.parametrize(
    ("name", "args", "extra", "action", "risk"),
    [
        ("http", {"url": "https://api.example.com/"}, {}, "run", Risk.GREEN),
        ("http", {"url": "https://api.example.com/", "method": "POST"}, {}, "approve", Risk.RED),
        ("http", {"url": "https://evil.net/", "method": "POST"}, {}, "refuse", Risk.RED),
        ("http", {"url": "https://evil.net/"}, {}, "refuse", Risk.GREEN),
        ("shell", {"command": "ls"}, {}, "run", Risk.YELLOW),
        ("shell", {"command": "ls"}, {"approval": {"redTools": ["shell"]}}, "approve", Risk.RED),
        (
            "shell",
            {"command": "ls"},
            {"approval": {"requiredFor": ["YELLOW", "RED"]}},
            "approve",
            Risk.YELLOW,
        ),
        (
            "http",
            {"url": "https://api.example.com/", "method": "DELETE"},
            {"approval": {"requiredFor": []}},
            "run",
            Risk.RED,
        ),
        (
            "files",
            {"operation": "read", "path": "/etc/shadow"},
            {"approval": {"redTools": ["files"]}},
            "refuse",
            Risk.GREEN,
        ),
        ("python", {"code": "1"}, {}, "refuse", Risk.RED),  # not enabled for this agent
    ],
)
def test_policy(
    ctx: ToolContext, name: str, args: dict[str, Any], extra: dict[str, Any], action: str, risk: Risk
) -> None:
    spec = _spec(**extra)
    tools = enabled_tools(spec)
    verdict = assess_call(tools.get(name), name, args, spec, ctx)
    assert (verdict.action, verdict.risk) == (action, risk), verdict.reason
    if action != "run":
        assert verdict.reason
