"""The kept workspace (Agent spec.workspace.persistent): its claim, and the run gate's rule that one
run of the Agent at a time uses it (docs/runs.md, "A kept workspace"; the pure parts in
builders/workspace.py and builders/run_gate.workspace_held).

A run uses the workspace from the moment the gate lets it start until it has ended and its pods are
gone. "In use" is read from the cluster each time, so it holds across operator restarts: the other
runs of the Agent that have a Job (status.jobName, a paused run waiting for an approval included) and
have not ended, and the Agent's run pods that have not finished (a cancelled run's pod still shutting
down included). Between the gate's decision and the Job's creation the run is remembered here, taken
with no await after the check, so two runs starting together never both pass.
"""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient

from agentry_common import constants as c
from agentry_common.models import AgentSpec, Phase

from .. import kube
from ..builders.execution_status import POD_ENDED
from ..builders.job import effective_spec
from ..builders.kinds import Meta
from ..builders.run_gate import Held, workspace_held
from ..builders.workspace import build_claim, kept_claim
from ..settings import Settings
from .state import Key, Logger, State, phase_of


async def held_for_workspace(
    client: AsyncClient, state: State, meta: Meta, agent: Meta, spec: AgentSpec
) -> Held | None:
    """None when the run (its metadata) may use the Agent's kept workspace now (it is taken for it);
    else why not."""
    if kept_claim(agent, spec) is None:
        return None
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    agent_key: Key = (namespace, agent.get("name", ""))
    busy = await _pods_in_use(client, namespace, agent_key[1], name)  # the only await: before the check
    for other in state.executions_of(*agent_key):
        other_name = other["metadata"]["name"]
        ended = (phase := phase_of(other)) is not None and phase.terminal
        if other_name != name and not ended and (other.get("status") or {}).get("jobName"):
            busy.add(other_name)
    holders = state.gate.workspaces
    taker = holders.taken.get(agent_key)
    if taker is not None and taker != (namespace, name) and _starting(state, taker):
        busy.add(taker[1])
    result = workspace_held(agent_key[1], sorted(busy))
    if result is None:
        holders.taken[agent_key] = (namespace, name)
    else:
        holders.waiting.setdefault(agent_key, set()).add((namespace, name))
    return result


def _starting(state: State, key: Key) -> bool:
    """Whether the run the gate let start still counts as using the workspace (it has not ended)."""
    item = state.executions.get(key)
    return item is not None and not (phase_of(item) or Phase.PENDING).terminal


async def _pods_in_use(client: AsyncClient, namespace: str, agent: str, execution: str) -> set[str]:
    """The runs (by the pods' execution annotation) of the Agent whose pods have not finished."""
    runs: set[str] = set()
    async for pod in client.list(kube.Pod, namespace=namespace, labels={c.LABEL_AGENT: agent[:63]}):
        meta, status = pod.metadata, pod.status
        if meta is None or (status is not None and status.phase in POD_ENDED):
            continue
        run = (meta.annotations or {}).get(c.ANNOTATION_EXECUTION) or (meta.labels or {}).get(
            c.LABEL_EXECUTION, ""
        )
        if run and run != execution:
            runs.add(run)
    return runs


async def ensure_claim(client: AsyncClient, config: Settings, agent: Meta, spec: AgentSpec) -> None:
    """The Agent's (by its metadata) claim exists (created, or found: a claim is never changed once
    made)."""
    if kept_claim(agent, spec) is not None:
        await kube.create_or_adopt(client, build_claim(agent, spec, config))


async def reconcile_claim(
    client: AsyncClient, config: Settings, agent: dict[str, Any], logger: Logger
) -> None:
    """An Agent written: its claim made ahead of its first run. A failure is only logged: every run's
    start makes the claim too (and reports a refusal on the run)."""
    try:
        await ensure_claim(client, config, agent["metadata"], effective_spec(agent, config))
    except Exception as exc:
        logger.warning("workspace claim of agent %s: %s", agent["metadata"]["name"], exc)
