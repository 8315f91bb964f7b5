"""`files`: read, write and list files, confined to the workspace.

Refused outright (never executed, whatever the approval settings): absolute paths, any `..`
component, and paths that resolve outside the workspace through a symlink. The check resolves the
path once; the open then walks that resolved path one component at a time from the workspace's own
descriptor with O_NOFOLLOW, so a directory (or the file) swapped for a symlink between the check and
the open is refused, not followed (a plain O_NOFOLLOW guards only the last component).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
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
    try:
        full = (root / pure).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop, or a link removed while it was read
        raise PathEscape(f"path {relative!r} refused: it cannot be resolved ({err})") from None
    if full != root and not full.is_relative_to(root):
        raise PathEscape(f"path {relative!r} refused: it resolves outside the workspace (symlink)")
    return full


def open_beneath(root: Path, target: Path, flags: int, *, make_dirs: bool = False) -> int:
    """A descriptor for `target` (a path `confine` resolved under `root`), opened by walking its
    components from `root` without following any symlink; PathEscape if one appeared since."""
    *dirs, last = target.relative_to(root).parts or (".",)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in dirs:
            if make_dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
            step = _open_step(name, os.O_RDONLY | os.O_DIRECTORY, fd)
            os.close(fd)
            fd = step
        return _open_step(last, flags, fd)
    finally:
        os.close(fd)


def _open_step(name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, dir_fd):
            raise PathEscape(
                f"{name!r} became a symlink after the path was checked: refused, not followed"
            ) from None
        raise


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


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

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return args.get("operation") in ("read", "list")  # a write may have appended half

    def describe(self, args: Mapping[str, Any]) -> str:
        return f"files {args.get('operation', '?')} {one_line(str(args.get('path', '.')), 120)}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(FilesArgs, args)
        try:
            target = confine(ctx.workspace, parsed.path)
        except PathEscape as err:
            return ToolOutcome(str(err), is_error=True, details={"refused": True})
        root = ctx.workspace.resolve()
        try:
            if parsed.operation == "read":
                return _read(root, target)
            if parsed.operation == "write":
                if parsed.content is None:
                    raise ToolInputError("invalid arguments: content: required for write")
                return _write(root, target, parsed.content)
            return _list(root, target)
        except PathEscape as err:
            return ToolOutcome(f"path {parsed.path!r} refused: {err}", True, details={"refused": True})
        except OSError as err:
            return ToolOutcome(f"{parsed.operation} {parsed.path}: {err.strerror or err}", True)


def _read(root: Path, target: Path) -> ToolOutcome:
    fd = open_beneath(root, target, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_READ_BYTES + 1)
    text, cut = truncate_bytes(data, MAX_READ_BYTES)
    if cut:
        text += f"\n[file larger than {MAX_READ_BYTES} bytes; only the start and end are shown]"
    return ToolOutcome(text, details={"bytes": len(data)})


def _write(root: Path, target: Path, content: str) -> ToolOutcome:
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        return ToolOutcome(f"refused: content is larger than {MAX_WRITE_BYTES} bytes", True)
    # Parents are created by the same symlink-refusing walk, so a race cannot redirect them.
    fd = open_beneath(root, target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, make_dirs=True)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    rel = target.relative_to(root)
    return ToolOutcome(f"wrote {len(data)} bytes to {rel}", details={"bytes": len(data)})


def _list(root: Path, target: Path) -> ToolOutcome:
    rel = target.relative_to(root)
    try:
        fd = open_beneath(root, target, os.O_RDONLY | os.O_DIRECTORY)
    except NotADirectoryError:
        return ToolOutcome(f"{rel} is not a directory", True)
    lines = []
    try:
        with os.scandir(fd) as listing:  # entries are stat'ed relative to fd, never by path
            entries = sorted(listing, key=lambda e: e.name)
            for entry in entries[:MAX_LIST_ENTRIES]:
                lines.append(_entry_line(entry))
    finally:
        os.close(fd)
    if len(entries) > MAX_LIST_ENTRIES:
        lines.append(f"[... {len(entries) - MAX_LIST_ENTRIES} more entries]")
    return ToolOutcome("\n".join(lines) or "(empty directory)", details={"entries": len(entries)})


def _entry_line(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return f"link  {entry.name}"
    if entry.is_dir(follow_symlinks=False):
        return f"dir   {entry.name}/"
    return f"file  {entry.name} ({entry.stat(follow_symlinks=False).st_size} bytes)"
