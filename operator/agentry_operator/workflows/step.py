"""A step's attempts: reading them from their Executions, and building the Execution of a new one.

An attempt's Execution has a deterministic name (run, step, attempt number), so a reconcile run
twice, or again after a crash, creates it once: the second create gets 409 and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from agentry_common import constants as c
from agentry_common import workflows as w
from agentry_common.models import Phase, Trigger
from agentry_common.naming import short_hash

from ..builders.kinds import OwnerReference, RunSpec

MAX_INPUT = 65536  # the Execution CRD's spec.input maxLength


@dataclass(frozen=True)
class Attempt:
    """One Execution of a step, as the planner needs it."""

    step: str
    number: int
    name: str
    phase: Phase | None
    created: dt.datetime
    completed: dt.datetime | None
    summary: str = ""
    tokens: int = 0
    cost: Decimal = Decimal(0)
    cancelling: bool = False
    outputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.phase is not None and self.phase.terminal


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cost(value: object) -> Decimal:
    try:
        return Decimal(str(value or "0"))
    except InvalidOperation:
        return Decimal(0)


def _outputs(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def step_fields(phase: str, attempts: Sequence[Attempt] | None) -> dict[str, str]:
    """What a template may read of a step: its phase, and its latest attempt's summary and named
    outputs (`outputs.KEY`; one the run did not set is empty)."""
    last = attempts[-1] if attempts else None
    fields = {"phase": phase, "summary": last.summary if last else ""}
    fields |= {f"outputs.{k}": v for k, v in (last.outputs if last else {}).items()}
    return fields


def attempt_of(execution: Mapping[str, Any]) -> Attempt | None:
    """The attempt an Execution is, or None if it carries no (valid) step and attempt labels."""
    meta = execution.get("metadata") or {}
    labels = meta.get("labels") or {}
    step, number = labels.get(w.LABEL_WORKFLOW_STEP), str(labels.get(w.LABEL_WORKFLOW_ATTEMPT))
    if not step or not number.isdigit():
        return None
    status = execution.get("status") or {}
    usage = status.get("usage") or {}
    phase = status.get("phase")
    return Attempt(
        step=step,
        number=int(number),
        name=meta["name"],
        phase=Phase(phase) if phase else None,
        created=parse_time(meta.get("creationTimestamp")) or dt.datetime.now(dt.UTC),
        completed=parse_time(status.get("completionTime")),
        summary=str((status.get("result") or {}).get("summary") or ""),
        outputs=_outputs((status.get("result") or {}).get("outputs")),
        tokens=int(usage.get("totalTokens") or 0),
        cost=_cost(usage.get("costUSD")),
        cancelling=bool((execution.get("spec") or {}).get("cancel")),
    )


def attempts_from(executions: Iterable[Mapping[str, Any]], run_uid: str) -> dict[str, list[Attempt]]:
    """Each step's attempts by number, from the Executions owned by the run with uid `run_uid` (a
    re-created run of the same name never counts its predecessor's)."""
    found: dict[str, list[Attempt]] = {}
    for ex in executions:
        owners = (ex.get("metadata") or {}).get("ownerReferences") or []
        if not any(o.get("uid") == run_uid for o in owners):
            continue
        attempt = attempt_of(ex)
        if attempt is not None:
            found.setdefault(attempt.step, []).append(attempt)
    return {step: sorted(items, key=lambda a: a.number) for step, items in found.items()}


def execution_name(run: str, step: str, attempt: int) -> str:
    """`<run>-<step>-<attempt>`; when longer than a label value allows, the run and step part is cut
    and a hash of it keeps names of different steps apart."""
    plain = f"{run}-{step}-{attempt}"
    if len(plain) <= w.MAX_LABEL_NAME:
        return plain
    suffix = f"{short_hash(f'{run}/{step}')}-{attempt}"
    room = w.MAX_LABEL_NAME - len(suffix) - 1
    return f"{f'{run}-{step}'[:room].rstrip('-.')}-{suffix}"


def owner_reference(run: Mapping[str, Any]) -> OwnerReference:
    return {
        "apiVersion": c.API_VERSION,
        "kind": w.WORKFLOW_RUN_KIND,
        "name": run["metadata"]["name"],
        "uid": run["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def step_trigger(run_labels: Mapping[str, str]) -> str:
    """A run a Trigger started (its `agentry.dev/trigger: Webhook` label) passes that on to its steps,
    whose inputs come from the payload: the runtime frames them as untrusted. Other steps: Manual."""
    webhook = run_labels.get(c.LABEL_TRIGGER) == Trigger.WEBHOOK
    return Trigger.WEBHOOK.value if webhook else Trigger.MANUAL.value


def build_execution(
    run: Mapping[str, Any], step: Mapping[str, Any], attempt: int, input_text: str
) -> dict[str, Any]:
    """The Execution of one attempt of `step`, labelled with its workflow, run, step and attempt (and
    the run's owner, for the run gate) and owned by the run (deleting the run deletes its steps)."""
    meta = run["metadata"]
    labels = {
        w.LABEL_WORKFLOW: run["spec"]["workflowRef"]["name"][:63].rstrip("-."),
        w.LABEL_WORKFLOW_RUN: meta["name"],
        w.LABEL_WORKFLOW_STEP: step["name"],
        w.LABEL_WORKFLOW_ATTEMPT: str(attempt),
    }
    if owner := (meta.get("labels") or {}).get(c.LABEL_OWNER):
        labels[c.LABEL_OWNER] = owner
    spec: RunSpec = {
        "agentRef": {"name": step["agentRef"]["name"]},
        "input": input_text[:MAX_INPUT],
        "trigger": step_trigger(meta.get("labels") or {}),
        "correlationId": f"{short_hash(meta['uid'], 12)}-{step['name']}-{attempt}"[:64],
    }
    if step.get("priority") is not None:
        spec["priority"] = int(step["priority"])
    if step.get("outputs"):
        spec["outputs"] = [str(o) for o in step["outputs"]]
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.EXECUTION_KIND,
        "metadata": {
            "name": execution_name(meta["name"], step["name"], attempt),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(run)],
        },
        "spec": spec,
    }
