"""Cluster mode (`--kubeconfig`): agents and runs through the Kubernetes API instead of the Agentry API.

For people with kubectl access (an admin, `make dev`): Agents and Executions are read and written as
the custom resources they are, with the kubeconfig's identity and RBAC. A run is an Execution with
`trigger: Manual`; `--wait` polls its status. Approvals, logs, usage and budgets need the API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from lightkube import ApiError as KubeError
from lightkube import Client, ConfigError, KubeConfig

from agentry_common import constants as c
from agentry_common.conditions import ConditionType
from agentry_common.models import TERMINAL_PHASES, Trigger
from agentry_common.resources import Agent, Execution

from .client import ApiError
from .session import InputError
from .watch import stops

FIELD_MANAGER = "agentry-cli"
POLL_SECONDS = 1.0


@contextmanager
def translated() -> Iterator[None]:
    """The API server's refusals and connection failures as the CLI's `ApiError` (same exit codes)."""
    try:
        yield
    except KubeError as exc:
        status = exc.status
        raise ApiError(
            int(status.code or 500), str(status.reason or "Error"), str(status.message or "")
        ) from None
    except httpx.HTTPError as exc:
        raise ApiError(
            0, "Unavailable", f"cannot reach the Kubernetes API: {type(exc).__name__}: {exc}"
        ) from None


def connect(kubeconfig: str, namespace: str | None) -> Client:
    try:
        config = KubeConfig.from_file(kubeconfig)
    except (OSError, ConfigError) as exc:
        raise InputError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
    return Client(config, namespace=namespace, field_manager=FIELD_MANAGER)


def plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    out.get("metadata", {}).pop("managedFields", None)
    return out


def agent_row(cr: Mapping[str, Any]) -> dict[str, Any]:
    """An Agent CR in the columns the API's agents have (pure)."""
    status = cr.get("status") or {}
    conditions = status.get("conditions") or []
    ready: dict[str, Any] = next((x for x in conditions if x.get("type") == ConditionType.READY), {})
    spec = cr.get("spec") or {}
    return {
        "id": cr["metadata"]["name"],
        "name": cr["metadata"]["name"],
        "source": "cluster",
        "status": {
            "ready": ready.get("status"),
            "model": status.get("model"),
            "lastExecution": status.get("lastExecution"),
        },
        "spec": {"schedule": spec.get("schedule")},
        "sync": {},
    }


def run_row(cr: Mapping[str, Any]) -> dict[str, Any]:
    """An Execution CR in the columns the API's runs have (pure)."""
    status = cr.get("status") or {}
    return {
        "id": cr["metadata"]["name"],
        "agentId": ((cr.get("spec") or {}).get("agentRef") or {}).get("name"),
        "phase": status.get("phase") or "Pending",
        "reason": status.get("reason"),
        "message": status.get("message"),
        "usage": status.get("usage"),
        "result": status.get("result"),
        "approval": status.get("approval"),
        "createdAt": cr["metadata"].get("creationTimestamp"),
    }


def execution_manifest(agent: str, text: str | None, parent: str | None = None) -> dict[str, Any]:
    """A Manual run of `agent`; with `parent`, a follow-up of that run (spec.parentRef)."""
    spec: dict[str, Any] = {
        "agentRef": {"name": agent},
        "trigger": Trigger.MANUAL.value,
        "correlationId": uuid.uuid4().hex,
    }
    if text:
        spec["input"] = text
    if parent:
        spec["parentRef"] = {"name": parent}
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.EXECUTION_KIND,
        "metadata": {"generateName": f"{agent}-"},
        "spec": spec,
    }


def follow_up_refusal(cr: Mapping[str, Any]) -> str | None:
    """Why the run cannot be continued now (None: it can). The operator's run gate decides; this
    answers early, as the API does."""
    name, status = cr["metadata"]["name"], cr.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase not in TERMINAL_PHASES:
        return (
            f"run {name} is still {phase}: steering a live run goes through the API (set it with "
            "`agentry login`); in cluster mode, reply once it has finished"
        )
    if int((status.get("checkpoint") or {}).get("entries") or 0) <= 0:
        return (
            f"run {name} has no checkpoint journal to continue from (runs journal their turns through "
            "the LLM gateway): start a new run instead"
        )
    return None


def parent_name(cr: Mapping[str, Any]) -> str | None:
    found = ((cr.get("spec") or {}).get("parentRef") or {}).get("name")
    return str(found) if found else None


def thread_rows(crs: Sequence[Mapping[str, Any]], name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The thread of run `name` among `crs` (pure): its ancestors (the first run first), itself, then
    its continuations at any depth, oldest first; rows as the API's `thread` items."""
    by_name = {str(cr["metadata"]["name"]): cr for cr in crs}

    def row(cr: Mapping[str, Any], relation: str) -> dict[str, Any]:
        view = run_row(cr)
        usage = view["usage"] if isinstance(view["usage"], dict) else {}
        tokens = int(usage.get("inputTokens") or 0) + int(usage.get("outputTokens") or 0)
        return {
            "name": view["id"],
            "relation": relation,
            "parent": parent_name(cr),
            "phase": view["phase"],
            "createdAt": view["createdAt"],
            "tokens": tokens,
            "costUSD": str(usage.get("costUSD") or "0"),
        }

    if name not in by_name:
        return []
    ancestors: list[Mapping[str, Any]] = []
    seen, up = {name}, parent_name(by_name[name])
    while up in by_name and up not in seen and len(ancestors) < limit:
        seen.add(up)
        ancestors.insert(0, by_name[up])
        up = parent_name(by_name[up])
    later: list[Mapping[str, Any]] = []
    frontier = [name]
    while frontier and len(later) < limit:
        current = frontier.pop(0)
        for cr in crs:
            child = str(cr["metadata"]["name"])
            if parent_name(cr) == current and child not in seen:
                seen.add(child)
                later.append(cr)
                frontier.append(child)
    later.sort(key=lambda cr: (str(cr["metadata"].get("creationTimestamp") or ""), cr["metadata"]["name"]))
    return [
        *(row(cr, "ancestor") for cr in ancestors),
        row(by_name[name], "self"),
        *(row(cr, "continuation") for cr in later[:limit]),
    ]


def agent_manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.AGENT_KIND,
        "metadata": {"name": body["name"]},
        "spec": body["spec"],
    }


class Cluster:
    def __init__(self, client: Client) -> None:
        self.client = client

    def agents(self) -> list[dict[str, Any]]:
        with translated():
            return [plain(a) for a in self.client.list(Agent)]

    def agent(self, name: str) -> dict[str, Any]:
        with translated():
            return plain(self.client.get(Agent, name))

    def apply_agent(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with translated():
            return plain(self.client.apply(Agent.from_dict(agent_manifest(body))))

    def runs(self, agent: str | None) -> list[dict[str, Any]]:
        with translated():
            items = [plain(x) for x in self.client.list(Execution)]
        if agent:
            items = [x for x in items if ((x.get("spec") or {}).get("agentRef") or {}).get("name") == agent]
        return sorted(items, key=lambda x: str(x["metadata"].get("creationTimestamp") or ""), reverse=True)

    def run(self, name: str) -> dict[str, Any]:
        with translated():
            return plain(self.client.get(Execution, name))

    def submit(self, agent: str, text: str | None) -> dict[str, Any]:
        self.agent(agent)  # 404 naming the agent, rather than an Execution that never starts
        with translated():
            return plain(self.client.create(Execution.from_dict(execution_manifest(agent, text))))

    def reply(self, run: str, text: str) -> dict[str, Any]:
        """A follow-up of `run`: an Execution of the same Agent whose spec.parentRef names it."""
        parent = self.run(run)  # 404 naming the run
        problem = follow_up_refusal(parent)
        if problem is not None:
            raise ApiError(409, "Conflict", problem)
        agent = str(((parent.get("spec") or {}).get("agentRef") or {}).get("name") or "")
        with translated():
            made = self.client.create(Execution.from_dict(execution_manifest(agent, text, parent=run)))
        return plain(made)

    def thread(self, name: str) -> list[dict[str, Any]]:
        """The run's thread (`thread_rows`) from every Execution of the namespace."""
        with translated():
            crs = [plain(x) for x in self.client.list(Execution)]
        return thread_rows(crs, name)

    def wait(self, name: str, deadline: float, on_phase: Callable[[str], None]) -> dict[str, Any] | None:
        """The run once it ends or waits for approval; None past `deadline` (monotonic)."""
        seen = ""
        while time.monotonic() < deadline:
            cr = self.run(name)
            phase = (cr.get("status") or {}).get("phase") or "Pending"
            if phase != seen:
                seen = phase
                on_phase(phase)
            if stops(phase, stop_at_approval=True):
                return cr
            time.sleep(POLL_SECONDS)
        return None
