"""The validating webhooks of Workflows and WorkflowRuns (rules: workflows/graph.py).

Both fail closed, like the Agent's: while the operator is down, such writes are refused rather than
let through unchecked (a run of an invalid Workflow would fail anyway, later and less clearly).
"""

from __future__ import annotations

import functools

import kopf
from lightkube import ApiError, AsyncClient

from agentry_common import constants as c
from agentry_common import workflows as w
from agentry_common.policy import AgentPolicy, load_policy

from .. import kube
from ..builders.governance import owner_of
from ..builders.kinds import Schedule
from ..context import find
from ..settings import get_settings
from ..webhook import owner_label_errors
from ..workflows import graph
from ..workflows.resources import Workflow
from .workflow_schedule import schedule_errors


def _client(memo: kopf.Memo) -> AsyncClient:
    ctx = find(memo)
    if ctx is None:  # a review before start-up finished: refused (the API server's caller retries)
        raise kopf.AdmissionError("the operator is starting; try again", code=503)
    return ctx.client


@functools.cache
def _policy() -> AgentPolicy:
    """The Agent policy (the same file main.get_policy reads at start-up, so known to be valid)."""
    return load_policy(get_settings().policy_file)


def _namespace(body: kopf.Body, namespace: str | None) -> str:
    return str(body.get("metadata", {}).get("namespace") or namespace or "")


def _refuse(errors: list[str]) -> None:
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)


async def _owners(client: AsyncClient, namespace: str, names: set[str]) -> dict[str, str | None]:
    """Each Agent's owner label ("" for none), None for an Agent that does not exist."""
    found: dict[str, str | None] = {}
    for name in sorted(names):
        try:
            agent = await kube.get_or_none(client, kube.Agent, name, namespace)
            found[name] = None if agent is None else owner_of(agent)
        except ApiError as exc:
            raise kopf.AdmissionError(
                f"spec.steps: the operator could not read Agent {name} ({exc.status.message}); refused",
                code=422,
            ) from exc
    return found


def _schedule_errors(body: kopf.Body) -> list[str]:
    """spec.schedule: cron and zone (CEL cannot parse them), and its parameters fit the Workflow."""
    found: Schedule = (body.get("spec") or {}).get("schedule") or Schedule()
    schedule = found.copy()
    if not schedule:
        return []
    given = dict(schedule.get("parameters") or {})
    problems = graph.parameter_values(body, given)[1]
    return schedule_errors(schedule) + [f"spec.schedule.{p.removeprefix('spec.')}" for p in problems]


def _owner_labels(kind: str, body: kopf.Body, userinfo: kopf.UserInfo, old: kopf.Body | None) -> None:
    """The owner labels: set or changed only by the identities that act for owners (webhook.py)."""
    _refuse(
        owner_label_errors(
            kind, dict(body), dict(old) if old is not None else None, dict(userinfo), get_settings()
        )
    )


async def validate_workflow(
    body: kopf.Body,
    userinfo: kopf.UserInfo,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    namespace: str | None = None,
    **_: object,
) -> None:
    """Workflows (CREATE, UPDATE): the owner labels; for a new or changed spec the graph, templates,
    and that each Agent exists and has the Workflow's owner."""
    _owner_labels(w.WORKFLOW_KIND, body, userinfo, old)
    spec = dict(body.get("spec") or {})
    if old is not None and dict(old.get("spec") or {}) == spec and owner_of(old) == owner_of(body):
        return  # metadata only
    errors = graph.spec_errors(spec) + graph.priority_errors(spec, _policy()) + _schedule_errors(body)
    agents = {str((s.get("agentRef") or {}).get("name")) for s in graph.steps_of(spec)}
    namespace = _namespace(body, namespace)
    if not errors and namespace:
        owners = await _owners(_client(memo), namespace, agents)
        errors = graph.agent_errors(spec, {n: o is not None for n, o in owners.items()})
        errors += graph.owner_errors(spec, owner_of(body), owners)
    _refuse(errors)


async def validate_workflow_run(
    body: kopf.Body,
    userinfo: kopf.UserInfo,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    namespace: str | None = None,
    **_: object,
) -> None:
    """WorkflowRuns: the owner labels (CREATE, UPDATE); on CREATE (the spec is immutable) the Workflow
    exists, the run has its owner, and the parameters fit it."""
    _owner_labels(w.WORKFLOW_RUN_KIND, body, userinfo, old)
    if old is not None:
        return
    spec = dict(body.get("spec") or {})
    name = str((spec.get("workflowRef") or {}).get("name") or "")
    namespace = _namespace(body, namespace)
    try:
        workflow = await kube.get_or_none(_client(memo), Workflow, name, namespace)
    except ApiError as exc:
        raise kopf.AdmissionError(
            f"spec.workflowRef.name: the operator could not read Workflow {name} ({exc.status.message})",
            code=422,
        ) from exc
    if workflow is None:
        _refuse([f"spec.workflowRef.name: no Workflow {name} in namespace {namespace}"])
        return
    if owner_of(workflow) and owner_of(workflow) != owner_of(body):
        _refuse(
            [
                f"metadata.labels.{c.LABEL_OWNER}: a WorkflowRun has its Workflow's owner; Workflow {name} "
                "has another"
            ]
        )
    _refuse(graph.parameter_values(workflow, dict(spec.get("parameters") or {}))[1])


def register_webhooks(registry: kopf.OperatorRegistry) -> None:
    """Served at /validate-workflow and /validate-workflowrun (the chart's webhook configuration
    must name the same paths)."""
    kopf.on.validate(
        c.GROUP,
        c.VERSION,
        w.WORKFLOW_PLURAL,
        id="validate-workflow",
        operations=["CREATE", "UPDATE"],
        ignore_failures=False,
        persistent=True,
        registry=registry,
    )(validate_workflow)
    kopf.on.validate(
        c.GROUP,
        c.VERSION,
        w.WORKFLOW_RUN_PLURAL,
        id="validate-workflowrun",
        operations=["CREATE", "UPDATE"],
        ignore_failures=False,
        persistent=True,
        registry=registry,
    )(validate_workflow_run)
