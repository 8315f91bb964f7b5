"""The validating webhook's rules for kubectl (and every other) writes of Agents and Executions.

* Agents: what the CRD schema and CEL cannot check (builders/agent_status.spec_errors), and the Agent
  policy (agentry_common.policy, the same one the API applies to dashboard users) whenever the spec
  is created or changed. The webhook fails closed (failurePolicy Fail).
* The owner labels (`agentry.dev/owner`: who owns it and is charged; `agentry.dev/owner-kind`) of
  Agents, Executions, Workflows, WorkflowRuns and Triggers: only the identities that act for owners
  (`owner_label_writers`: the API, the operator, the schedule tick), or a cluster administrator, may
  set or change them; they alone start runs of owned Agents (`start_errors`).
* Executions: their spec.priority (which overrides the Agent's) within the policy's range; a new
  follow-up's spec.parentRef, as far as it is known without reading the parent (`parent_errors`).

The rules are pure (`agent_errors`, `execution_errors`, `owner_label_errors`, `start_errors`);
`secret_labels` reads the labels of the Secrets an Agent references.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Secret

from agentry_common import constants as c
from agentry_common.models import AgentSpec
from agentry_common.policy import (
    AgentPolicy,
    SecretLabels,
    is_secret_name,
    priority_violations,
    violations,
)

from .builders.agent_status import spec_errors
from .builders.follow_up import follow_up_error, parent_name
from .builders.governance import PROVIDER_KEY_ENVS, owner_of
from .builders.run_gate import owner_error
from .settings import Settings

MASTERS = "system:masters"
OWNER_LABELS = (c.LABEL_OWNER, c.LABEL_OWNER_KIND)
Doc = Mapping[str, Any]


def _labels(body: Doc | None) -> Mapping[str, str]:
    return ((body or {}).get("metadata") or {}).get("labels") or {}


def may_write_owner(userinfo: Doc, config: Settings) -> bool:
    if userinfo.get("username") in config.owner_label_writers:
        return True
    return config.owner_label_trust_masters and MASTERS in (userinfo.get("groups") or [])


def owner_label_errors(kind: str, new: Doc, old: Doc | None, userinfo: Doc, config: Settings) -> list[str]:
    """Refuse setting (create) or changing (update, removal included) the owner labels of any kind
    that carries them, except by the identities that act for owners (or a cluster administrator)."""
    if may_write_owner(userinfo, config):
        return []
    who = userinfo.get("username") or "this user"
    errors = []
    for label in OWNER_LABELS:
        before, after = _labels(old).get(label), _labels(new).get(label)
        if after is not None if old is None else before != after:
            errors.append(
                f"metadata.labels.{label}: only the Agentry API may set or change the owner labels of "
                f"a {kind} (they decide who owns it and is charged); {who} may not"
            )
    return errors


def start_errors(execution: Doc, agent: Doc | None, userinfo: Doc, config: Settings) -> list[str]:
    """A new Execution: a run of an owned Agent is started only by the identities that act for owners,
    and names only its owner's Agents. The operator's run gate applies the same rule to every run (an
    Agent created after its Execution included); this answers the creator at once."""
    spoofed = owner_label_errors(c.EXECUTION_KIND, execution, None, userinfo, config)
    if spoofed or agent is None:
        return spoofed  # the same answer whichever of the Execution's webhooks the server asks first
    name = str(((execution.get("spec") or {}).get("agentRef") or {}).get("name") or "")
    agent_owner = owner_of(agent)
    if agent_owner and not may_write_owner(userinfo, config):
        who = userinfo.get("username") or "this user"
        return [
            f"spec.agentRef.name: Agent {name!r} belongs to an Agentry user: only the Agentry API and the "
            f'operator start its runs, {who} may not (docs/security.md, "Who may start a run")'
        ]
    problem = owner_error(owner_of(execution), agent_owner, name)
    return [problem] if problem else []


def agent_errors(
    new: Doc,
    old: Doc | None,
    config: Settings,
    policy: AgentPolicy,
    secret_labels: SecretLabels,
) -> list[str]:
    """Why an Agent write is refused (empty: accepted). The policy applies when the spec is new or
    changed: metadata-only updates (the operator's own annotations, finalizers) of an Agent made
    before the policy was tightened still pass."""
    spec = dict(new.get("spec") or {})
    errors = spec_errors(spec, config.gateway_url, config.default_model_spec)
    if errors or (old is not None and dict(old.get("spec") or {}) == spec):
        return errors
    # Governed runs never get provider-key entries (builders/governance.governed_secrets): those
    # entries skip the opt-in rule, but never the never-referable Secrets.
    unchecked = PROVIDER_KEY_ENVS if config.governed else frozenset()
    found = violations(
        AgentSpec.model_validate(spec),
        policy,
        secret_labels,
        unchecked_secret_envs=unchecked,
        checkpointed=config.governed,
    )
    return [str(v) for v in found]


def execution_errors(new: Doc, old: Doc | None, policy: AgentPolicy) -> list[str]:
    """An Execution's spec.priority (it overrides its Agent's) within the policy's range."""
    priority = (new.get("spec") or {}).get("priority")
    if old is not None and (old.get("spec") or {}).get("priority") == priority:
        return []
    if not isinstance(priority, int):
        return []  # the CRD schema refuses anything else
    return [str(v) for v in priority_violations(priority, policy, ("spec", "priority"))]


def parent_errors(new: Doc, old: Doc | None, governed: bool) -> list[str]:
    """A new follow-up (spec.parentRef): what is known without reading its parent (a run naming
    itself, the gateway off). The run gate checks the rest when the run starts."""
    name = parent_name(new)
    if old is not None or not name:
        return []
    if not governed or name == _name(new):
        return [follow_up_error(new, None, governed)]
    return []


def _name(body: Doc) -> str:
    return str((body.get("metadata") or {}).get("name") or "")


def referenced(spec: Doc) -> list[str]:
    names = set()
    for entry in spec.get("secrets") or []:
        ref = entry.get("secretKeyRef") if isinstance(entry, Mapping) else None
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) and is_secret_name(ref["name"]):
            names.add(ref["name"])
    return sorted(names)


async def secret_labels(
    client: AsyncClient, namespace: str, names: list[str]
) -> dict[str, dict[str, str] | None]:
    """Labels of each named Secret (None: absent). A refusal other than 404 (RBAC) raises: the
    webhook then refuses the Agent (fail closed)."""
    found: dict[str, dict[str, str] | None] = {}
    for name in names:
        try:
            secret = await client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                found[name] = None
                continue
            raise
        found[name] = dict((secret.metadata.labels if secret.metadata else None) or {})
    return found
