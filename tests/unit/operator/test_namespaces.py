"""Namespace patterns resolved by the operator (agentry_operator/controller/namespaces.py): kopf's
syntax and semantics, and a watch per matching namespace for as long as it exists."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.structs.references import match_namespace  # the semantics kopf's own watches use

from agentry_operator.controller.informer import Watch
from agentry_operator.controller.namespaces import Namespaces, has_patterns, is_pattern, matches, selected

pytestmark = pytest.mark.unit

PATTERNS = ["team-*", "myapp-*, !*-pr-*, *pr-123", "!*-pr-*, *pr-123", "a?c", "exact", "!kube-*"]
NAMES = [
    "team-a", "team-", "teams", "myapp-test", "myapp-pr-123", "myapp-pr-456", "otherapp-pr-123",
    "anyapp-anything", "abc", "abbc", "exact", "exactly", "kube-system", "default",
]  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_matches_what_kopf_matches(pattern: str) -> None:
    assert [matches(name, pattern) for name in NAMES] == [match_namespace(name, pattern) for name in NAMES]


def test_patterns_and_names() -> None:
    assert [is_pattern(p) for p in ("team-*", "a?c", "!x", "a,b", "exact", "a-b")] == [True] * 4 + [False] * 2
    assert has_patterns(["exact", "team-*"]) and not has_patterns(["exact", "other"])
    assert selected("team-a", ["other", "team-*"]) and not selected("kube-system", ["other", "team-*"])


def _namespace(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}}


async def test_a_matching_namespace_gets_its_watches_until_it_is_deleted() -> None:
    started: list[str] = []

    async def forever(event: str | None, obj: dict[str, Any]) -> None:
        return None

    def watches(namespace: str) -> list[Watch]:
        started.append(namespace)
        return [_Idle(None, None, None, {}, namespace, forever)]  # type: ignore[arg-type]

    found = Namespaces(None, None, ["team-*"], watches)  # type: ignore[arg-type]
    await found.on_event(None, _namespace("team-a"))  # listed
    await found.on_event("ADDED", _namespace("other"))  # not matching: no watch
    await found.on_event("ADDED", _namespace("team-b"))  # created later
    await found.on_event("MODIFIED", _namespace("team-b"))  # already watched: nothing more
    assert started == ["team-a", "team-b"] and sorted(found.running) == ["team-a", "team-b"]
    task = found.running["team-b"][0]
    await found.on_event("DELETED", _namespace("team-b"))
    await asyncio.sleep(0)
    assert task.cancelled() and sorted(found.running) == ["team-a"]
    found.stop_all()
    await asyncio.sleep(0)
    assert found.running == {} and found.tasks() == []


class _Idle(Watch):
    """A watch that only waits (the requests have their own tests)."""

    def __post_init__(self) -> None:
        self.name = f"idle in {self.namespace}"

    async def run(self) -> None:
        await asyncio.Event().wait()
