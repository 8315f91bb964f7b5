"""`files`: read, write and list files, confined to the workspace.

Refused outright (never executed, whatever the approval settings): absolute paths, any `..`
component, and paths that resolve outside the workspace through a symlink. The final open uses
O_NOFOLLOW so a symlink swapped in after the check is not followed either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field

from agentry_common.models import Risk
from agentry_llm.types import ToolSpec

from .base import (
    Assessment,
    ToolArgs,
    ToolContext,
    ToolInputError,
    ToolOutcome,
    one_line,
    parse_args,
    truncate_bytes,
)

MAX_READ_BYTES = 256 * 1024
MAX_WRITE_BYTES = 10 * 1024 * 1024
MAX_LIST_ENTRIES = 500


class PathEscape(Exception):
    pass


def confine(workspace: Path, relative: str) -> Path:
    """The real path of `relative` inside the workspace, or PathEscape saying why not."""
    if not relative or "\x00" in relative:
        raise PathEscape("empty or invalid path")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise PathEscape(f"absolute path {relative!r} refused: use a path relative to the workspace")
    if ".." in pure.parts:
        raise PathEscape(f"path {relative!r} refused: '..' may not appear in a path")
    root = workspace.resolve()
    full = (root / pure).resolve()
    if full != root and not full.is_relative_to(root):
        raise PathEscape(f"path {relative!r} refused: it resolves outside the workspace (symlink)")
    return full


class FilesArgs(ToolArgs):
    operation: Literal["read", "write", "list"]
    path: str = Field(default=".", min_length=1)
    content: str | None = None


class FilesTool:
    name = "files"

    def spec(self, ctx: ToolContext) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=(
                "Read, write or list files in the workspace. Paths are relative to the workspace; "
                "absolute paths, '..' and symlinks leading outside it are refused. `write` "
                "creates parent directories and replaces the file."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "operation": {"type": "string", "enum": ["read", "write", "list"]},
                    "path": {"type": "string", "description": "Relative path; '.' is the root."},
                    "content": {"type": "string", "description": "Text to write (write only)."},
                },
                "required": ["operation", "path"],
                "additionalProperties": False,
            },
        )

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        op = args.get("operation")
        risk = Risk.YELLOW if op == "write" else Risk.GREEN
        path = args.get("path", ".")
        try:
            confine(ctx.workspace, str(path))
        except PathEscape as err:
            return Assessment(risk, refusal=str(err))
        return Assessment(risk)

    def describe(self, args: Mapping[str, Any]) -> str:
        return f"files {args.get('operation', '?')} {one_line(str(args.get('path', '.')), 120)}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(FilesArgs, args)
        try:
            target = confine(ctx.workspace, parsed.path)
        except PathEscape as err:
            return ToolOutcome(str(err), is_error=True, details={"refused": True})
        try:
            if parsed.operation == "read":
                return _read(target)
            if parsed.operation == "write":
                if parsed.content is None:
                    raise ToolInputError("invalid arguments: content: required for write")
                return _write(target, parsed.content, ctx.workspace)
            return _list(target, ctx.workspace)
        except OSError as err:
            return ToolOutcome(f"{parsed.operation} {parsed.path}: {err.strerror or err}", True)


def _read(target: Path) -> ToolOutcome:
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_READ_BYTES + 1)
    text, cut = truncate_bytes(data, MAX_READ_BYTES)
    if cut:
        text += f"\n[file larger than {MAX_READ_BYTES} bytes; only the start and end are shown]"
    return ToolOutcome(text, details={"bytes": len(data)})


def _write(target: Path, content: str, workspace: Path) -> ToolOutcome:
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        return ToolOutcome(f"refused: content is larger than {MAX_WRITE_BYTES} bytes", True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The parent may have been created through a race; re-check before writing.
    confine(workspace, str(target.relative_to(workspace.resolve())))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    rel = target.relative_to(workspace.resolve())
    return ToolOutcome(f"wrote {len(data)} bytes to {rel}", details={"bytes": len(data)})


def _list(target: Path, workspace: Path) -> ToolOutcome:
    if not target.is_dir():
        return ToolOutcome(f"{target.relative_to(workspace.resolve())} is not a directory", True)
    lines = []
    entries = sorted(target.iterdir(), key=lambda p: p.name)
    for entry in entries[:MAX_LIST_ENTRIES]:
        if entry.is_symlink():
            lines.append(f"link  {entry.name}")
        elif entry.is_dir():
            lines.append(f"dir   {entry.name}/")
        else:
            lines.append(f"file  {entry.name} ({entry.stat().st_size} bytes)")
    if len(entries) > MAX_LIST_ENTRIES:
        lines.append(f"[... {len(entries) - MAX_LIST_ENTRIES} more entries]")
    return ToolOutcome("\n".join(lines) or "(empty directory)", details={"entries": len(entries)})
