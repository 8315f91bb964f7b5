"""Follow-ups (docs/runs.md, "Follow-ups"): continue a finished run with a new message, and a run's thread.

A follow-up is a new Execution whose spec.parentRef names the run it continues; it is started by the
same path as any run of the user (RunService.run, after the route's quota check), so ownership,
quotas and the operator's run gate apply to it. The operator's gate is the authority on whether a
run may be continued (same Agent and owner, finished, with a checkpoint journal); the checks here
answer the caller early, with what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from agentry_common.models import Phase, Trigger

from ..auth import User
from ..schemas.follow_ups import ExecutionDetail, Relation, ThreadRun
from .errors import Conflict
from .runs import TERMINAL, RunService
from .views import execution_out

Doc = dict[str, Any]
MAX_ANCESTORS = 50  # a thread deeper than this shows its newest ancestors only
MAX_CONTINUATIONS = 100
MAX_THREAD = 300  # runs of one thread read for a run's page (a larger tree shows a part of it)


def refusal(name: str, cr: Doc | None) -> str | None:
    """Why the run (its Execution CR, None if gone) cannot be continued now; None if it can."""
    if cr is None:
        return (
            f"run {name!r} no longer exists in the cluster (its history was pruned), so there is no "
            "conversation to continue: start a new run"
        )
    status = cr.get("status") or {}
    phase = status.get("phase") or Phase.PENDING.value
    if phase == Phase.WAITING_APPROVAL.value:
        approval = (status.get("approval") or {}).get("id") or ""
        return f"run {name!r} is waiting for approval {approval}: approve or deny it first"
    if phase not in TERMINAL:
        return (
            f"run {name!r} is still {phase}: a live run is steered, not continued; a follow-up "
            f"continues it once it has finished (`agentry runs get {name}` shows its phase)"
        )
    if int((status.get("checkpoint") or {}).get("entries") or 0) <= 0:
        return (
            f"run {name!r} has no checkpoint journal to continue from (runs journal their turns through "
            "the LLM gateway; without it, or when a run ended before its first turn, there is none): "
            "start a new run instead"
        )
    return None


def usage_of(doc: Doc) -> tuple[int, str]:
    found = doc.get("usage")
    usage: Doc = found if isinstance(found, dict) else {}
    tokens = int(usage.get("inputTokens") or 0) + int(usage.get("outputTokens") or 0)
    return tokens, str(usage.get("costUSD") or "0")


def thread_run(doc: Doc, relation: Relation) -> ThreadRun:
    tokens, cost = usage_of(doc)
    return ThreadRun(
        name=doc["id"],
        relation=relation,
        parent=doc.get("parent"),
        phase=doc.get("phase") or Phase.PENDING.value,
        createdAt=doc.get("createdAt", ""),
        tokens=tokens,
        costUSD=cost,
    )


def relatives(doc: Doc, members: Iterable[Doc]) -> tuple[list[Doc], list[Doc]]:
    """The run's ancestors (the first run first) and its continuations at any depth, among the runs of
    its thread (pure; a cycle of parents, which only a hand-written Execution could make, ends)."""
    by_name = {m["id"]: m for m in members if m.get("id")}
    children: dict[str, list[Doc]] = {}
    for member in by_name.values():
        if member.get("parent"):
            children.setdefault(member["parent"], []).append(member)
    ancestors: list[Doc] = []
    seen = {doc["id"]}
    up = doc.get("parent")
    while up in by_name and up not in seen and len(ancestors) < MAX_ANCESTORS:
        seen.add(up)
        ancestors.insert(0, by_name[up])
        up = by_name[up].get("parent")
    later: list[Doc] = []
    frontier = [doc["id"]]
    while frontier and len(later) < MAX_CONTINUATIONS:
        for child in children.get(frontier.pop(0), []):
            if child["id"] not in seen:
                seen.add(child["id"])
                later.append(child)
                frontier.append(child["id"])
    return ancestors, later[:MAX_CONTINUATIONS]


def root_of(parent: Doc) -> str:
    """The first run of the thread a follow-up of `parent` joins (stored as the follow-up's `root`)."""
    return str(parent.get("root") or parent["id"])


def oldest_first(doc: Doc, continuations: Iterable[Doc]) -> list[Doc]:
    """Continuations oldest first, each after the run it continues. Times alone cannot say it: a
    run made by kubectl carries its creationTimestamp (whole seconds), one made by the API carries
    microseconds, so a follow-up made within its parent's second could sort before it."""
    pending = sorted(continuations, key=lambda d: (d.get("createdAt", ""), d["id"]))
    placed = {doc["id"]}
    ordered: list[Doc] = []
    while pending:
        ready = [d for d in pending if d.get("parent") in placed] or pending[:1]  # [:1]: a cycle ends
        ordered.append(ready[0])
        placed.add(ready[0]["id"])
        pending.remove(ready[0])
    return ordered


def thread_of(ancestors: Iterable[Doc], doc: Doc, continuations: Iterable[Doc]) -> list[ThreadRun]:
    """Ancestors as given (the first run first), the run, its continuations oldest first."""
    later = oldest_first(doc, continuations)
    return [
        *(thread_run(d, "ancestor") for d in ancestors),
        thread_run(doc, "self"),
        *(thread_run(d, "continuation") for d in later),
    ]


class FollowUps:
    def __init__(self, runs: RunService) -> None:
        self.runs = runs

    async def target(self, user: User, name: str) -> Doc:
        """The run to continue: 404 as for any run that is not the caller's; 409 saying why not now."""
        doc = await self.runs.get(user, name)
        agent = await self.runs.store.owned_agent(user.id, doc.get("agentId", ""))
        if agent is None:
            raise Conflict(
                f"the agent of run {name!r} ({doc.get('agentId')}) no longer exists: a follow-up runs "
                "the same agent; start a new run of another one"
            )
        cr = await self.runs.cluster.get_execution(name)
        if cr is not None and ((cr.get("spec") or {}).get("agentRef") or {}).get("name") != doc["agentId"]:
            cr = None  # the name was reused for another agent's run: this run's Execution is gone
        problem = refusal(name, cr)
        if problem is not None:
            raise Conflict(problem)
        return doc

    async def reply(self, user: User, parent: Doc, message: str) -> Doc:
        """The continuation, started by the path of every run (after `target` and the quota check)."""
        return await self.runs.run(
            user,
            parent["agentId"],
            message,
            trigger=Trigger.MANUAL,
            parent=parent["id"],
            root=root_of(parent),
        )

    async def thread(self, user: User, doc: Doc) -> list[ThreadRun]:
        """The run's ancestors, itself and its continuations at any depth: only the caller's runs.
        One query for the runs of its thread (they share `root`), one read for the first run."""
        root = doc.get("root") or doc["id"]
        store = self.runs.store
        if root == doc["id"]:
            members = await store.thread_members(user.id, root, MAX_THREAD)
        else:  # side by side: the two answers do not depend on each other
            members, first = await asyncio.gather(
                store.thread_members(user.id, root, MAX_THREAD), store.owned_execution(user.id, root)
            )
            members += [first] if first is not None else []
        ancestors, later = relatives(doc, members)
        return thread_of(ancestors, doc, later)


async def execution_detail(runs: RunService, user: User, name: str) -> ExecutionDetail:
    """The run's view with its thread (the run page and `GET /api/executions/{id}`)."""
    doc = await runs.get(user, name)
    thread = await FollowUps(runs).thread(user, doc)
    return ExecutionDetail(**execution_out(doc).model_dump(), thread=thread)
