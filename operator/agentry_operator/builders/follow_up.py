"""The run gate's follow-up rule, pure (docs/runs.md, "Follow-ups"; the handler: handlers/execution.py).

An Execution with spec.parentRef continues a finished run: it starts from the parent's checkpoint
journal (read through the gateway with the parent's state keys). The parent must be a run the child
may read all of: the same namespace (it is looked up there), the same Agent, the same owner label
(both absent counts as the same), finished, and with a journal; the gateway must be on (it stores
journals). A child that breaks a rule ends Failed (FollowUpRefused), never retried: the parent cannot
come to qualify by itself except by finishing, and a follow-up of a running parent is a mistake the
caller should see at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentry_common.conditions import Reason
from agentry_common.models import Phase

from .governance import owner_of
from .run_gate import Held

Doc = Mapping[str, object]
FIELD = "spec.parentRef.name"
FINISHED = frozenset({Phase.SUCCEEDED.value, Phase.FAILED.value, Phase.CANCELLED.value})


@dataclass(frozen=True)
class Parent:
    """The run a follow-up continues, as its Job needs it: name (env, label) and uid (token claim,
    state keys)."""

    name: str
    uid: str


def at(doc: Doc | None, *path: str) -> object:
    """The value at `path` in a document (None where a step is missing or not an object)."""
    value: object = doc
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def text(doc: Doc | None, *path: str) -> str:
    value = at(doc, *path)
    return value if isinstance(value, str) else ""


def parent_name(execution: Doc) -> str:
    """spec.parentRef.name, "" for a run that is no follow-up."""
    return text(execution, "spec", "parentRef", "name")


def parent_of(parent: Doc) -> Parent:
    return Parent(text(parent, "metadata", "name"), text(parent, "metadata", "uid"))


def follow_up_error(execution: Doc, parent: Doc | None, governed: bool) -> str:
    """Why this follow-up may not continue `parent` (its Execution in the same namespace, None when
    there is none); "" when it may."""
    name = parent_name(execution)
    if not name:
        return ""
    where = f"{FIELD}: {name!r}"
    if not governed:
        return f"{where}: follow-ups need the LLM gateway, which keeps runs' checkpoints, and it is off"
    if name == text(execution, "metadata", "name"):
        return f"{where}: a run cannot continue itself"
    if parent is None:
        namespace = text(execution, "metadata", "namespace")
        return f"{where}: no Execution of that name in namespace {namespace}"
    agent, parent_agent = (
        text(execution, "spec", "agentRef", "name"),
        text(parent, "spec", "agentRef", "name"),
    )
    if parent_agent != agent:
        return (
            f"{where} is a run of Agent {parent_agent!r}, not of {agent!r}: a follow-up runs the same Agent"
        )
    if owner_of(parent) != owner_of(execution):
        return f"{where} has another owner: a follow-up continues only its owner's runs"
    phase = text(parent, "status", "phase") or Phase.PENDING.value
    if phase not in FINISHED:
        return f"{where} is {phase}: only a finished run (Succeeded, Failed or Cancelled) is continued"
    entries = at(parent, "status", "checkpoint", "entries")
    if not isinstance(entries, int) or isinstance(entries, bool) or entries <= 0:
        return f"{where} has no checkpoints (status.checkpoint.entries is 0): there is nothing to continue"
    return ""


def follow_up_held(execution: Doc, parent: Doc | None, governed: bool) -> Held | None:
    problem = follow_up_error(execution, parent, governed)
    return Held(Phase.FAILED, Reason.FOLLOW_UP_REFUSED, problem) if problem else None
