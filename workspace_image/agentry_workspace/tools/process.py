"""`shell` and `python`: a subprocess in the workspace, with a timeout and bounded output.

The sandbox is the pod (non-root, read-only root filesystem, NetworkPolicy); these tools add a
working directory, a timeout that kills the whole process group, output truncation with a marker,
and an environment without the provider keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from agentry_common.models import Risk
from agentry_llm.types import ToolSpec

from .base import (
    TRUNCATION_MARKER,
    Assessment,
    ToolArgs,
    ToolContext,
    ToolOutcome,
    one_line,
    parse_args,
)

MAX_TIMEOUT = 3600.0


class _Capture:
    """Head and tail of a stream, in bounded memory whatever the process prints."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit // 2 - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            keep = self.limit - self.limit // 2
            if len(self.tail) > keep:
                del self.tail[: len(self.tail) - keep]

    def text(self) -> tuple[str, int]:
        data = bytes(self.head) + bytes(self.tail)
        cut = self.total - len(data)
        if cut <= 0:
            return data.decode("utf-8", errors="replace"), 0
        head = bytes(self.head).decode("utf-8", errors="replace")
        tail = bytes(self.tail).decode("utf-8", errors="replace")
        return head + TRUNCATION_MARKER.format(n=cut) + tail, cut


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_process(
    argv: list[str],
    *,
    ctx: ToolContext,
    limit_seconds: float,
    stdin: bytes | None = None,
) -> ToolOutcome:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ctx.workspace,
        env=dict(ctx.env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout kills its children too
    )
    capture = _Capture(ctx.max_output)

    async def pump() -> None:
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            capture.feed(chunk)
        await proc.wait()

    timed_out = False
    try:
        await asyncio.wait_for(pump(), limit_seconds)
    except TimeoutError:
        timed_out = True
        _kill_group(proc)
        await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc)  # the run's deadline: leave nothing running behind
        raise
    finally:
        _kill_group(proc)  # background children of a finished command die with it
    output, cut = capture.text()
    seconds = round(time.monotonic() - started, 3)
    if timed_out:
        content = f"[timed out after {limit_seconds:g}s; process killed]\n{output}"
        return ToolOutcome(content, is_error=True, details={"timedOut": True, "truncatedBytes": cut})
    code = proc.returncode
    content = f"exit code {code}\n{output}"
    return ToolOutcome(
        content,
        is_error=code != 0,
        details={"exitCode": code, "truncatedBytes": cut, "seconds": seconds},
    )


def _timeout(requested: float | None, ctx: ToolContext) -> float:
    return min(requested or ctx.timeout, MAX_TIMEOUT)


class ShellArgs(ToolArgs):
    command: str = Field(min_length=1)
    timeout_seconds: float | None = Field(default=None, gt=0)


class ShellTool:
    name = "shell"

    def spec(self, ctx: ToolContext) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=(
                "Run a command with /bin/sh in the workspace directory. Returns the exit code and "
                f"combined stdout/stderr (at most {ctx.max_output} bytes; the middle of longer "
                f"output is cut). Default timeout {ctx.timeout:g}s."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The shell command to run."},
                    "timeout_seconds": {"type": "number", "description": "Optional timeout."},
                },
                "required": ["command"],
                "additionalProperties": False,
            },
        )

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        # Changes the sandbox only; the pod's NetworkPolicy bounds what it can reach.
        return Assessment(Risk.YELLOW)

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return False  # a command's effects are unknown

    def describe(self, args: Mapping[str, Any]) -> str:
        return f"$ {one_line(str(args.get('command', '')))}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(ShellArgs, args)
        return await run_process(
            ["/bin/sh", "-c", parsed.command],
            ctx=ctx,
            limit_seconds=_timeout(parsed.timeout_seconds, ctx),
        )


class PythonArgs(ToolArgs):
    code: str = Field(min_length=1)
    timeout_seconds: float | None = Field(default=None, gt=0)


class PythonTool:
    name = "python"

    def spec(self, ctx: ToolContext) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=(
                "Run a Python 3 program in the workspace directory (pandas, numpy, requests, "
                "beautifulsoup4 and matplotlib are installed). Print what you need to see; "
                f"output is capped at {ctx.max_output} bytes. Default timeout {ctx.timeout:g}s."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": "The program's source code."},
                    "timeout_seconds": {"type": "number", "description": "Optional timeout."},
                },
                "required": ["code"],
                "additionalProperties": False,
            },
        )

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        return Assessment(Risk.YELLOW)

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return False  # a command's effects are unknown

    def describe(self, args: Mapping[str, Any]) -> str:
        return f"python: {one_line(str(args.get('code', '')))}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(PythonArgs, args)
        # The program comes on stdin: no temp file in the workspace, no argv length limit.
        return await run_process(
            [sys.executable, "-u", "-"],
            ctx=ctx,
            limit_seconds=_timeout(parsed.timeout_seconds, ctx),
            stdin=parsed.code.encode("utf-8"),
        )
