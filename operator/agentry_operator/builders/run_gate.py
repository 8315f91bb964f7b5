"""The run gate's rules, pure (docs/security.md, "Who may start a run"; the handler: handlers/run_gate.py).

Every run passes the gate before its Job exists, whoever created its Execution: the API, kubectl, a
schedule's tick or timer, a workflow step, a backfill, the designer's trial. The gate knows the run
only by what it carries, so the rules are about labels that only trusted identities can write (the
webhook's owner-label rule):

* the run belongs to its Agent's owner (the Agent's `agentry.dev/owner` label), and an Execution of
  an owned Agent must carry that same label: kubectl users, who cannot set it, never start runs of an
  API user's Agent, and a run labelled for one owner never names another owner's Agent. A run of an
  Agent without owner (made with kubectl) belongs to whoever its label names, if any: the API runs
  such Agents for their import owner;
* the Agent policy, again at the start (a policy tightened after the Agent was written);
* the owner's quotas: runs at once (over it the run waits Pending until one ends) and runs started
  per UTC day (over it the run ends Failed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common.conditions import Reason
from agentry_common.models import AgentSpec, Phase
from agentry_common.policy import AgentPolicy, priority_violations, violations

from ..settings import Settings
from .governance import owner_of

WAIT_SECONDS = 30.0  # a run waiting for the owner's slot also looks again this often (an end wakes it)


@dataclass(frozen=True)
class Limits:
    """One owner's run quotas (0: no limit)."""

    concurrent_runs: int
    runs_per_day: int


@dataclass(frozen=True)
class Held:
    """A run the gate does not let start now: its phase, reason and message (Pending: it waits)."""

    phase: Phase
    reason: Reason
    message: str


def labels_of(obj: Mapping[str, Mapping[str, object]]) -> Mapping[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def limits_of(agent: Mapping[str, Mapping[str, object]], config: Settings) -> Limits:
    """The quotas of the Agent's owner: a guest's (owner-kind label) or a signed-in user's."""
    if labels_of(agent).get(c.LABEL_OWNER_KIND) == c.OWNER_KIND_GUEST:
        return Limits(config.guest_quota_concurrent_runs, config.guest_quota_runs_per_day)
    return Limits(config.quota_concurrent_runs, config.quota_runs_per_day)


def owner_error(run_owner: str, agent_owner: str, agent: str) -> str | None:
    """Why a run labelled `run_owner` may not run Agent `agent` of `agent_owner` (None: it may)."""
    if run_owner == agent_owner or not agent_owner:
        return None  # an Agent without owner runs for whoever may label the run (the API's import owner)
    label = f"metadata.labels.{c.LABEL_OWNER}"
    if not run_owner:
        return (
            f"spec.agentRef.name: Agent {agent!r} belongs to an Agentry user, and only the identities "
            f"that act for owners (the Agentry API, the operator, the schedule tick) start its runs: the "
            f"run carries no {label}"
        )
    return (
        f"{label}: the run's owner is not the owner of Agent {agent!r}; a run names only its owner's Agents"
    )


def run_owner(execution: Mapping[str, object], agent: Mapping[str, object]) -> str:
    """Whom a run is for (once owner_held let it pass): its label, else its Agent's."""
    return owner_of(execution) or owner_of(agent)


def owner_held(execution: Mapping[str, Any], agent: Mapping[str, Any]) -> Held | None:
    """The run ends Failed (OwnerMismatch) when its owner label and its Agent's differ."""
    name = str(execution["spec"]["agentRef"]["name"])
    problem = owner_error(owner_of(execution), owner_of(agent), name)
    return None if problem is None else Held(Phase.FAILED, Reason.OWNER_MISMATCH, problem)


def policy_errors(
    execution: Mapping[str, Any], agent: Mapping[str, Any], policy: AgentPolicy, checkpointed: bool = False
) -> list[str]:
    """The Agent policy at the start: the webhook checks an Agent when it is written, but a policy
    tightened since, and an Execution's spec.priority (its webhook fails open, for schedule ticks),
    are checked here. Secrets' opt-in labels stay the webhook's (it reads the Secrets); names that are
    never referable are checked here too. `checkpointed`: the gateway is on (the timeout's cap)."""
    try:
        spec = AgentSpec.model_validate(agent.get("spec") or {})
    except ValidationError:
        return []  # not a valid Agent: the start ends it InvalidAgent on its Ready condition
    every_env = frozenset(s.env for s in spec.secrets)
    found = violations(spec, policy, {}, unchecked_secret_envs=every_env, checkpointed=checkpointed)
    priority = (execution.get("spec") or {}).get("priority")
    if isinstance(priority, int):
        found += priority_violations(priority, policy, ("spec", "priority"))
    return [str(v) for v in found]


def policy_held(errors: list[str]) -> Held | None:
    if not errors:
        return None
    return Held(
        Phase.FAILED, Reason.POLICY_VIOLATION, "the Agent policy refuses this run: " + "; ".join(errors)
    )


def utc_day(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%d")


def quota_held(active: int, started_today: int, limits: Limits, now: dt.datetime) -> Held | None:
    """The owner's quotas for one more run: `active` runs hold a slot, `started_today` were admitted
    this UTC day (this one excluded from both)."""
    if limits.concurrent_runs and active >= limits.concurrent_runs:
        return Held(
            Phase.PENDING,
            Reason.CONCURRENT_RUNS_QUOTA,
            f"the owner has {active} runs active, the most at once (quota concurrent_runs: "
            f"{limits.concurrent_runs}); it starts when one ends",
        )
    if limits.runs_per_day and started_today >= limits.runs_per_day:
        return Held(
            Phase.FAILED,
            Reason.RUNS_PER_DAY_QUOTA,
            f"the owner has started {started_today} runs on {utc_day(now)} (UTC), the most per day "
            f"(quota runs_per_day: {limits.runs_per_day}); not started",
        )
    return None


def workspace_held(agent: str, holders: list[str]) -> Held | None:
    """One run of an Agent at a time uses its kept workspace: with `holders` (other runs of the Agent
    that use it, or took it to start) this run waits Pending until they end."""
    if not holders:
        return None
    return Held(
        Phase.PENDING,
        Reason.WORKSPACE_BUSY,
        f"run {', '.join(sorted(holders))} is using the kept workspace of Agent {agent!r} "
        "(spec.workspace.persistent: one run at a time); it starts when that run ends",
    )
