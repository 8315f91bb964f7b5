"""Pure parts of governance (docs/governance.md): the admission request, what its answer does to an
Execution's status, and the run token's Secret. No API or HTTP calls; unit-tested without a cluster."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common.checkpoints import ENV_PARENT_STATE_KEYS, SECRET_PARENT_STATE_KEYS
from agentry_common.conditions import ConditionType, Reason
from agentry_common.governance import Action, AdmissionDecision, AdmissionRequest, Zone
from agentry_common.models import AgentSpec, Phase, Runtime, SecretSpec, Trigger
from agentry_common.statesig import ENV_STATE_KEY, SECRET_STATE_KEY

from ..conditions import get_condition, set_condition
from ..settings import Settings
from .kinds import Condition, EnvVar, EnvVarSource, OwnerReference
from .model import effective_model

# Variables the model SDKs and the runtime read a provider key from. A governed run gets the run token
# in the first and third; an Agent's spec.secrets entries for any of them stay out of the pod.
PROVIDER_KEY_ENVS = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY"})
TOKEN_ENVS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
TOKEN_KEY = "token"  # key of the run token in its Secret
DEFAULT_PRIORITY = 5

# The throttle condition's reason names the gateway's zone.
ZONE_REASONS = {
    Zone.NORMAL: Reason.NORMAL_ZONE,
    Zone.THROTTLE: Reason.THROTTLE_ZONE,
    Zone.CRITICAL: Reason.CRITICAL_ZONE,
    Zone.EXHAUSTED: Reason.EXHAUSTED_ZONE,
}


def priority_of(
    execution: Mapping[str, Mapping[str, object]], agent: Mapping[str, Mapping[str, object]]
) -> int:
    """The run's priority: the Execution's spec.priority, else its Agent's, else 5."""
    for spec in (execution.get("spec") or {}, agent.get("spec") or {}):
        priority = spec.get("priority")
        if isinstance(priority, int):
            return priority
    return DEFAULT_PRIORITY


def model_chain(spec: AgentSpec) -> tuple[str, ...]:
    """The models a run may ask the gateway for (its run token's `mdl` claim): the effective spec's
    model, then its fallbacks. Empty (any model) without a model, and for the `claude-code` runtime,
    whose CLI also asks for a small model of its own choosing (background tasks)."""
    if spec.model is None or spec.runtime is Runtime.CLAUDE_CODE:
        return ()
    return tuple(dict.fromkeys([spec.model.name, *(f.name for f in spec.model.fallbacks)]))


def owner_of(obj: Mapping[str, object]) -> str:
    """An object's owner label, "" for none (an Agent's: the budget user; "" -> the gateway budgets by
    namespace; also the run gate's owner, builders/run_gate.py)."""
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return str(labels.get(c.LABEL_OWNER) or "") if isinstance(labels, Mapping) else ""


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def max_wait_seconds(
    execution: dict[str, Any], agent: dict[str, Any], config: Settings, now: dt.datetime
) -> int:
    """How much longer the run may wait for budget.

    A scheduled run: what is left of its schedule's startingDeadlineSeconds since its scheduled time.
    Otherwise: AGENTRY_ADMISSION_MAX_WAIT_SECONDS since the Execution was created.
    """
    spec = execution.get("spec") or {}
    deadline = ((agent.get("spec") or {}).get("schedule") or {}).get("startingDeadlineSeconds")
    since = _parse(spec.get("scheduledTime")) if spec.get("trigger") == Trigger.SCHEDULE else None
    if deadline and since is not None:
        budget = int(deadline)
    else:
        budget = config.admission_max_wait_seconds
        since = _parse((execution.get("metadata") or {}).get("creationTimestamp"))
    waited = (now - since).total_seconds() if since is not None else 0.0
    return max(0, int(budget - max(0.0, waited)))


def admission_request(
    execution: dict[str, Any], agent: dict[str, Any], config: Settings, now: dt.datetime
) -> dict[str, Any]:
    """The body of POST ADMISSION_PATH for one Execution (its uid: admission and metering charge the
    same subject)."""
    meta = execution["metadata"]
    request = AdmissionRequest(
        namespace=meta["namespace"],
        agent=agent["metadata"]["name"],
        user=owner_of(agent) or None,
        execution=meta["name"],
        execution_uid=meta.get("uid"),
        priority=priority_of(execution, agent),
        model=(effective_model(agent.get("spec") or {}, config.default_model_spec) or {}).get("name"),
        max_wait_seconds=max_wait_seconds(execution, agent, config, now),
    )
    return request.model_dump(by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class Answer:
    """The outcome of one admission call: the gateway's decision, or why there is none."""

    decision: dict[str, object] | None = None  # the JSON of an HTTP 200
    problem: str = ""
    unavailable: bool = True  # connection error, timeout or 5xx (else a 4xx or an unreadable body)


@dataclass
class Verdict:
    """What an admission answer does to the Execution."""

    start: bool  # create the Job now
    phase: Phase  # Pending (start or wait), or the terminal phase of a refusal
    reason: Reason  # status.reason when not starting
    message: str
    conditions: list[Condition] = field(default_factory=list)  # the complete new list
    retry_seconds: float | None = None  # ask again after this long (not starting, not terminal)
    log: str = ""


Conditions = list[Condition]


def decide(
    answer: Answer,
    conditions: Conditions | None,
    *,
    trigger: str | None,
    config: Settings,
    generation: int | None = None,
    now: str | None = None,
) -> Verdict:
    """Map the gateway's answer to the Execution's phase and conditions (docs/governance.md, table (b))."""

    def cond(
        conds: Conditions | None, type_: ConditionType, status: bool | None, reason: Reason, message: str
    ) -> Conditions:
        return set_condition(conds, type_, status, reason, message, generation, now)

    exceeded, throttled = ConditionType.BUDGET_EXCEEDED, ConditionType.BUDGET_THROTTLED
    if answer.decision is None:
        return _no_answer(answer, conditions, cond, config)
    try:
        decision = AdmissionDecision.model_validate(answer.decision)
    except ValidationError:
        return _unknown(answer.decision, conditions, cond, config)
    why = decision.reason
    if decision.action == Action.ALLOW:
        conds = cond(conditions, exceeded, False, Reason.WITHIN_BUDGET, why)
        conds = cond(conds, throttled, False, Reason.WITHIN_BUDGET, "")
        return Verdict(True, Phase.PENDING, Reason.ADMITTED, why, conds, log=f"allow: {why}")
    if decision.action == Action.THROTTLE:
        model = decision.model
        message = f"{why} (calls use {model})" if model and model not in why else why
        conds = cond(conditions, exceeded, False, Reason.WITHIN_BUDGET, "")
        conds = cond(conds, throttled, True, ZONE_REASONS[decision.zone], message)
        return Verdict(True, Phase.PENDING, Reason.ADMITTED, message, conds, log=f"throttle: {message}")
    if decision.action == Action.WAIT:
        retry = float(decision.retry_after_seconds or config.admission_recheck_seconds)
        retry = max(1.0, min(retry, config.admission_recheck_seconds))
        conds = cond(conditions, exceeded, True, Reason.BUDGET_WAIT, why)
        return Verdict(False, Phase.PENDING, Reason.BUDGET_WAIT, why, conds, retry, log=f"wait: {why}")
    phase = Phase.SKIPPED if trigger == Trigger.SCHEDULE else Phase.FAILED
    conds = cond(conditions, exceeded, True, Reason.BUDGET_EXCEEDED, why)
    return Verdict(False, phase, Reason.BUDGET_EXCEEDED, why, conds, log=f"refuse: {why}")


_Cond = Callable[[Conditions | None, ConditionType, bool | None, Reason, str], Conditions]


def _no_answer(answer: Answer, conditions: Conditions | None, cond: _Cond, config: Settings) -> Verdict:
    """No decision (the gateway down, or refusing the question): Pending, asked again later."""
    unavailable = config.admission_unavailable_retry_seconds
    reason = Reason.GATEWAY_UNAVAILABLE if answer.unavailable else Reason.ADMISSION_FAILED
    what = "did not answer" if answer.unavailable else "could not admit the run"
    message = f"the LLM gateway {what} ({answer.problem}); asking again in {unavailable:g} s"
    conds = cond(conditions, ConditionType.BUDGET_EXCEEDED, None, reason, message)
    return Verdict(False, Phase.PENDING, reason, message, conds, unavailable)


def _unknown(
    decision: Mapping[str, object], conditions: Conditions | None, cond: _Cond, config: Settings
) -> Verdict:
    """An answer that is no AdmissionDecision (an unknown action): Pending, asked again later."""
    unavailable = config.admission_unavailable_retry_seconds
    action = str(decision.get("action", ""))
    if action in {a.value for a in Action}:
        problem = f"an invalid admission answer for action {action!r}"
    else:
        problem = f"an unknown admission action {action!r}"
    message = f"the LLM gateway answered {problem}; asking again in {unavailable:g} s"
    conds = cond(conditions, ConditionType.BUDGET_EXCEEDED, None, Reason.ADMISSION_FAILED, message)
    return Verdict(False, Phase.PENDING, Reason.ADMISSION_FAILED, message, conds, unavailable)


def ended_with_token(execution: Mapping[str, Mapping[str, object]], status: Mapping[str, object]) -> bool:
    """True when a status write ends a run that had a Job (and so a run token): `status` (the patch)
    sets a terminal phase the Execution did not have."""
    was = execution.get("status") or {}
    phase, before = status.get("phase"), was.get("phase")
    if (
        phase is None
        or not Phase(str(phase)).terminal
        or (before is not None and Phase(str(before)).terminal)
    ):
        return False
    return bool(status.get("jobName") or was.get("jobName"))


def deleted_with_live_token(execution: Mapping[str, Mapping[str, object]]) -> bool:
    """True when a deleted Execution (its last state) had a Job, so a run token, and had not ended:
    a run that ended told the gateway when it did."""
    status = execution.get("status") or {}
    phase = status.get("phase")
    terminal = phase in {p.value for p in Phase if p.terminal}
    return bool(status.get("jobName")) and not terminal


def record_before_job(verdict: Verdict, conditions: Sequence[Condition] | None) -> bool:
    """True when a starting run's conditions must be written before its Job is created: a throttled
    start. Nothing in the Job tells it later, and an operator that crashes after creating the Job
    adopts it with the status it finds (decide_existing)."""
    throttled = get_condition(verdict.conditions, ConditionType.BUDGET_THROTTLED)
    before = get_condition(conditions, ConditionType.BUDGET_THROTTLED)
    return (
        verdict.start
        and throttled is not None
        and throttled.get("status") == "True"
        and (before is None or before.get("status") != "True")
    )


def governed_secrets(secrets: list[SecretSpec]) -> list[SecretSpec]:
    """spec.secrets without provider keys, nor other names for the same Secret keys or secrets."""
    keys = [s for s in secrets if s.env in PROVIDER_KEY_ENVS]
    refs = {(s.secret_key_ref.name, s.secret_key_ref.key) for s in keys if s.secret_key_ref is not None}
    managed = {s.secret_manager for s in keys if s.secret_manager is not None}
    return [
        s
        for s in secrets
        if s.env not in PROVIDER_KEY_ENVS
        and not (s.secret_key_ref is not None and (s.secret_key_ref.name, s.secret_key_ref.key) in refs)
        and not (s.secret_manager is not None and s.secret_manager in managed)
    ]


def token_env(secret_name: str, follow_up: bool = False) -> list[EnvVar]:
    """The run token as both provider keys, and the key that signs a paused run's state and its
    checkpoint journal, by reference (not readable from the pod spec). The state key is optional: a
    Secret an older operator made has none, and that run's state is then taken unsigned. A follow-up
    also gets the keys its parent's journal verifies with."""
    ref: EnvVarSource = {"secretKeyRef": {"name": secret_name, "key": TOKEN_KEY}}
    env: list[EnvVar] = [{"name": name, "valueFrom": ref} for name in TOKEN_ENVS]
    keys = [(ENV_STATE_KEY, SECRET_STATE_KEY)]
    if follow_up:
        keys.append((ENV_PARENT_STATE_KEYS, SECRET_PARENT_STATE_KEYS))
    for name, key in keys:
        optional: EnvVarSource = {"secretKeyRef": {"name": secret_name, "key": key, "optional": True}}
        env.append({"name": name, "valueFrom": optional})
    return env


def build_token_secret(
    execution: dict[str, Any],
    name: str,
    token: str,
    labels: dict[str, str],
    owner: OwnerReference,
    state_key: str,
    parent_keys: list[str] | None = None,
) -> dict[str, Any]:
    """The per-Job Secret holding the run token and the key that signs the run's paused state and its
    journal (and, for a follow-up, the keys its parent's journal verifies with); owned by the
    Execution (garbage-collected with it)."""
    data = {TOKEN_KEY: token, SECRET_STATE_KEY: state_key}
    if parent_keys is not None:
        data[SECRET_PARENT_STATE_KEYS] = json.dumps(parent_keys)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": execution["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner],
        },
        "immutable": True,
        "stringData": data,
    }
