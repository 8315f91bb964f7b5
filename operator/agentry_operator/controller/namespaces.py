"""The namespaces the runs' informer watches: exact names, every namespace, or patterns resolved here.

A pattern follows kopf's syntax and semantics (kopf resolves the same patterns for the Agents and
Workflows it watches): comma-separated globs (`*`, `?`), an exclusive one starting with `!`, a
catch-all implied before a leading exclusive one; the first inclusive glob matches, later inclusive
ones only match again what an exclusive one dropped. A namespace is watched when one pattern matches.
With patterns, Namespaces are listed and watched: a namespace that appears and matches gets its
watches, one that is deleted loses them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace

from .informer import Watch
from .wire import Wire

log = logging.getLogger("agentry.operator.namespaces")

PATTERN_CHARS = "!*?,"


def is_pattern(name: str) -> bool:
    """Whether `name` is a pattern rather than one namespace's name (kopf's rule)."""
    return any(ch in name for ch in PATTERN_CHARS)


def has_patterns(names: list[str]) -> bool:
    return any(is_pattern(name) for name in names)


def matches(name: str, pattern: str) -> bool:
    """Whether namespace `name` matches `pattern` (see the module)."""
    globs = [glob.strip() for glob in pattern.split(",")]
    if globs[0].startswith("!"):
        globs.insert(0, "*")
    first = fnmatch.fnmatchcase(name, globs[0])
    matched = first
    for glob in globs[1:]:
        if glob.startswith("!"):
            matched = matched and not fnmatch.fnmatchcase(name, glob[1:])
        else:
            matched = matched or (first and fnmatch.fnmatchcase(name, glob))
    return matched


def selected(name: str, patterns: list[str]) -> bool:
    return any(matches(name, pattern) for pattern in patterns)


@dataclass
class Namespaces:
    """Every namespace matching `patterns` gets the watches `watches(namespace)` makes, for as long
    as it exists."""

    client: AsyncClient
    wire: Wire
    patterns: list[str]
    watches: Callable[[str], list[Watch]]
    running: dict[str, list[asyncio.Task[None]]] = field(default_factory=dict)

    def watch(self) -> Watch:
        """The watch of Namespaces itself (run it as any other: informer.start)."""
        return Watch(self.client, self.wire, Namespace, {}, None, self.on_event)

    async def on_event(self, event: str | None, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if not name or not selected(name, self.patterns):
            return
        if event == "DELETED":
            self.stop(name)
        elif name not in self.running:
            log.info("namespace %s matches %s: watching its runs", name, ", ".join(self.patterns))
            self.running[name] = [
                asyncio.create_task(w.run(), name=f"watch {w.name}") for w in self.watches(name)
            ]

    def stop(self, name: str) -> None:
        tasks = self.running.pop(name, [])
        if tasks:
            log.info("namespace %s deleted: its runs are not watched any more", name)
        for task in tasks:
            task.cancel()

    def stop_all(self) -> None:
        for task in self.tasks():
            task.cancel()
        self.running.clear()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for tasks in self.running.values() for task in tasks]
