"""Pure rules for an Agent's status: validation, totals, last run, and which Executions to prune."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from pydantic import ValidationError

from agentry_common.conditions import Reason
from agentry_common.memory import NEEDS_GATEWAY as MEMORY_NEEDS_GATEWAY
from agentry_common.models import (
    AgentSpec,
    AgentStatus,
    Archived,
    HistoryLimits,
    LastExecution,
    McpStatus,
    ModelSpec,
    Phase,
    ScheduleBackend,
    Totals,
)
from agentry_common.pricing import usd_string
from agentry_common.workflows import WORKFLOW_RUN_KIND

from ..schedule import backfill_error, cron_error, timezone_error
from .kinds import Run
from .model import NO_MODEL

SUCCESS_LIKE = {Phase.SUCCEEDED, Phase.SKIPPED}
FAILURE_LIKE = {Phase.FAILED, Phase.CANCELLED}
ARCHIVE_NAMES = 200


def spec_errors(
    spec: dict[str, Any], gateway_url: str | None = None, default_model: ModelSpec | None = None
) -> list[str]:
    """What the CRD schema and CEL cannot check (cron syntax, IANA zone), plus the model itself.

    An Agent without spec.model needs the installation's default model (`default_model`). With the LLM
    gateway on (`gateway_url`), a model base URL pointing elsewhere is refused: the run would reach a
    model around the budgets (or send its token to another host).
    """
    try:
        model = AgentSpec.model_validate(spec)
    except ValidationError as exc:
        return [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    errors = []
    if model.model is None and default_model is None:
        errors.append(NO_MODEL)
    if gateway_url and model.model is not None:
        gateway = gateway_url.rstrip("/")
        refs = [("spec.model.baseURL", model.model.base_url)]
        refs += [
            (f"spec.model.fallbacks[{i}].baseURL", f.base_url) for i, f in enumerate(model.model.fallbacks)
        ]
        for field, url in refs:
            if url and not (url.rstrip("/") == gateway or url.startswith(gateway + "/")):
                errors.append(
                    f"{field} ({url}) bypasses the LLM gateway ({gateway}), which governs every model "
                    "call here: remove it (the gateway's routes choose the endpoint)"
                )
    if model.memory.enabled and not gateway_url:
        errors.append(MEMORY_NEEDS_GATEWAY)
    if model.schedule is not None:
        for problem in (cron_error(model.schedule.cron), timezone_error(model.schedule.time_zone)):
            if problem:
                errors.append(problem)
        if not errors and model.schedule.backfill is not None:
            problem = backfill_error(spec["schedule"])
            errors += [problem] if problem else []
    return errors


def uses_cronjob(spec: dict[str, Any]) -> bool:
    schedule = spec.get("schedule") or {}
    return bool(schedule) and schedule.get("backend", "CronJob") == ScheduleBackend.CRONJOB.value


def _phase(ex: Run) -> Phase | None:
    value = (ex.get("status") or {}).get("phase")
    return Phase(value) if value else None


def _created(ex: Run) -> str:
    return str((ex.get("metadata") or {}).get("creationTimestamp") or "")


def history_order(run: Mapping[str, object]) -> tuple[str, str, str, str]:
    """Oldest first, for historyLimits: by creation, then start, then end (each to the second: two
    runs made, run and ended within one second tie on all three), then name."""
    meta, status = run.get("metadata"), run.get("status")
    meta = meta if isinstance(meta, Mapping) else {}
    status = status if isinstance(status, Mapping) else {}
    return (
        str(meta.get("creationTimestamp") or ""),
        str(status.get("startTime") or ""),
        str(status.get("completionTime") or ""),
        str(meta.get("name") or ""),
    )


def _name(ex: Run) -> str:
    return (ex.get("metadata") or {}).get("name", "")


def is_missed(ex: Mapping[str, object]) -> bool:
    return (cast(Run, ex).get("status") or {}).get("reason") in {
        Reason.MISSED_STARTING_DEADLINE,
        Reason.CONCURRENCY_FORBIDDEN,
    }


@dataclass
class Tally:
    """Executions added up: status.totals, and status.archived (with the names counted)."""

    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    missed_runs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)

    @classmethod
    def of(cls, archived: Archived) -> Tally:
        counts = archived.model_dump(exclude={"cost_usd", "names"})
        return cls(**counts, cost=Decimal(archived.cost_usd))

    def add(self, ex: Run) -> None:
        phase = _phase(ex)
        usage = (ex.get("status") or {}).get("usage") or {}
        self.executions += 1
        self.succeeded += phase == Phase.SUCCEEDED
        self.failed += phase == Phase.FAILED
        self.missed_runs += is_missed(ex)
        self.input_tokens += int(usage.get("inputTokens", 0))
        self.output_tokens += int(usage.get("outputTokens", 0))
        self.cost += Decimal(str(usage.get("costUSD", "0")))

    def totals(self) -> Totals:
        counts = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("cost", "missed_runs")}
        return Totals(**counts, cost_usd=usd_string(self.cost))

    def archived(self, names: list[str]) -> Archived:
        totals = self.totals().model_dump()
        return Archived(**totals, missed_runs=self.missed_runs, names=names[-ARCHIVE_NAMES:])


def _workflow_step(execution: Run) -> bool:
    """Owned by a WorkflowRun (a run pruned by its Workflow's historyLimits orphans its steps, which
    are then the Agent's)."""
    owners = (execution.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == WORKFLOW_RUN_KIND for o in owners)


def to_prune(executions: Sequence[Mapping[str, object]], limits: HistoryLimits) -> list[Run]:
    """Finished Executions beyond spec.historyLimits, oldest first. A workflow's steps are not the
    Agent's to prune while their WorkflowRun owns them: a later step's input may still be templated
    from their results."""
    own = [e for e in cast(Sequence[Run], executions) if not _workflow_step(e)]
    ok = sorted((e for e in own if _phase(e) in SUCCESS_LIKE), key=history_order, reverse=True)
    bad = sorted((e for e in own if _phase(e) in FAILURE_LIKE), key=history_order, reverse=True)
    return sorted(ok[limits.succeeded :] + bad[limits.failed :], key=history_order)


def archive(archived: Archived, pruned: Sequence[Run]) -> Archived:
    """Fold pruned Executions into `archived`, skipping any already counted (retried prune)."""
    names, tally = list(archived.names), Tally.of(archived)
    for ex in pruned:
        if _name(ex) not in names:
            tally.add(ex)
            names.append(_name(ex))
    return tally.archived(names)


def discovered_mcp(executions: Sequence[Run]) -> McpStatus | None:
    """status.mcp: the MCP tools the newest run that reported them found, and which run that was
    (discovery happens at run start, in the run's sandbox and under its network rules: docs/mcp.md)."""
    reported = [e for e in executions if isinstance((e.get("status") or {}).get("mcp"), dict)]
    if not reported:
        return None
    newest = max(reported, key=_created)
    return McpStatus.model_validate(
        {**(newest.get("status") or {}).get("mcp", {}), "execution": _name(newest)}
    )


def summarize(executions: Sequence[Mapping[str, object]], archived: Archived) -> AgentStatus:
    """totals (archived + live), lastExecution, missedRuns and the MCP tools for the Agent's status."""
    runs, tally = cast(Sequence[Run], executions), Tally.of(archived)
    for ex in runs:
        tally.add(ex)
    status = AgentStatus(totals=tally.totals(), missed_runs=tally.missed_runs)
    mcp = discovered_mcp(runs)
    if mcp is not None:
        status.mcp = mcp
    if runs:
        last = max(runs, key=_created)
        st = last.get("status") or {}
        status.last_execution = LastExecution.model_validate(
            {
                k: v
                for k, v in {
                    "name": _name(last),
                    "phase": st.get("phase"),
                    "startTime": st.get("startTime") or _created(last) or None,
                    "completionTime": st.get("completionTime"),
                }.items()
                if v is not None
            }
        )
    return status
