"""Pure rules for an Agent's status: validation, totals, last run, and which Executions to prune."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from agentry_common.conditions import Reason
from agentry_common.models import AgentSpec, ModelSpec, Phase, ScheduleBackend
from agentry_common.workflows import WORKFLOW_RUN_KIND

from ..schedule import backfill_error, cron_error, timezone_error
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


def _phase(ex: dict[str, Any]) -> Phase | None:
    value = (ex.get("status") or {}).get("phase")
    return Phase(value) if value else None


def _usage(ex: dict[str, Any]) -> tuple[int, int, Decimal]:
    usage = (ex.get("status") or {}).get("usage") or {}
    return (
        int(usage.get("inputTokens", 0)),
        int(usage.get("outputTokens", 0)),
        Decimal(str(usage.get("costUSD", "0"))),
    )


def _created(ex: dict[str, Any]) -> str:
    return str(ex["metadata"].get("creationTimestamp") or "")


def is_missed(ex: dict[str, Any]) -> bool:
    return (ex.get("status") or {}).get("reason") in {
        Reason.MISSED_STARTING_DEADLINE,
        Reason.CONCURRENCY_FORBIDDEN,
    }


def add(acc: dict[str, Any], ex: dict[str, Any]) -> dict[str, Any]:
    """Add one Execution into a totals/archived dict (returns a new dict)."""
    phase = _phase(ex)
    inp, out, cost = _usage(ex)
    return {
        **acc,
        "executions": int(acc.get("executions", 0)) + 1,
        "succeeded": int(acc.get("succeeded", 0)) + (phase == Phase.SUCCEEDED),
        "failed": int(acc.get("failed", 0)) + (phase == Phase.FAILED),
        "missedRuns": int(acc.get("missedRuns", 0)) + is_missed(ex),
        "inputTokens": int(acc.get("inputTokens", 0)) + inp,
        "outputTokens": int(acc.get("outputTokens", 0)) + out,
        "costUSD": str(Decimal(str(acc.get("costUSD", "0"))) + cost),
    }


def _workflow_step(execution: dict[str, Any]) -> bool:
    """Owned by a WorkflowRun (a run pruned by its Workflow's historyLimits orphans its steps, which
    are then the Agent's)."""
    owners = (execution.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == WORKFLOW_RUN_KIND for o in owners)


def to_prune(executions: list[dict[str, Any]], limits: dict[str, Any]) -> list[dict[str, Any]]:
    """Finished Executions beyond spec.historyLimits, oldest first. A workflow's steps are not the
    Agent's to prune while their WorkflowRun owns them: a later step's input may still be templated
    from their results."""
    own = [e for e in executions if not _workflow_step(e)]
    ok = sorted((e for e in own if _phase(e) in SUCCESS_LIKE), key=_created, reverse=True)
    bad = sorted((e for e in own if _phase(e) in FAILURE_LIKE), key=_created, reverse=True)
    keep_ok, keep_bad = int(limits.get("succeeded", 10)), int(limits.get("failed", 5))
    return sorted(ok[keep_ok:] + bad[keep_bad:], key=_created)


def archive(archived: dict[str, Any], pruned: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold pruned Executions into `archived`, skipping any already counted (retried prune)."""
    names: list[str] = list(archived.get("names") or [])
    result = {k: v for k, v in archived.items() if k != "names"}
    for ex in pruned:
        name = ex["metadata"]["name"]
        if name in names:
            continue
        result = add(result, ex)
        names.append(name)
    result["names"] = names[-ARCHIVE_NAMES:]
    return result


def discovered_mcp(executions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """status.mcp: the MCP tools the newest run that reported them found, and which run that was
    (discovery happens at run start, in the run's sandbox and under its network rules: docs/mcp.md)."""
    reported = [e for e in executions if isinstance((e.get("status") or {}).get("mcp"), dict)]
    if not reported:
        return None
    newest = max(reported, key=_created)
    return {"execution": newest["metadata"]["name"], **newest["status"]["mcp"]}


def summarize(executions: list[dict[str, Any]], archived: dict[str, Any]) -> dict[str, Any]:
    """totals (archived + live), lastExecution, missedRuns and the MCP tools for the Agent's status."""
    totals = {k: v for k, v in archived.items() if k != "names"}
    for ex in executions:
        totals = add(totals, ex)
    missed = int(totals.pop("missedRuns", 0))
    totals.setdefault("executions", 0)
    status: dict[str, Any] = {"totals": totals, "missedRuns": missed}
    mcp = discovered_mcp(executions)
    if mcp is not None:
        status["mcp"] = mcp
    if executions:
        last = max(executions, key=_created)
        st = last.get("status") or {}
        status["lastExecution"] = {
            k: v
            for k, v in {
                "name": last["metadata"]["name"],
                "phase": st.get("phase"),
                "startTime": st.get("startTime") or last["metadata"].get("creationTimestamp"),
                "completionTime": st.get("completionTime"),
            }.items()
            if v is not None
        }
    return status
