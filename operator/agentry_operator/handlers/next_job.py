"""A run whose pod stopped at a checkpoint goes on in a new Job of the same Execution.

The pod exits INTERRUPTED (75) after a drain, an eviction or a deletion; its Job's podFailurePolicy
ends that Job (builders/job.py), and this starts the next one at once: the Job controller would
replace the pod only after its failure back-off (10 s, doubling with each loss). The new pod resumes
from the run's checkpoint journal. The next Job's name derives from the one it follows, so a
reconcile run twice (or after a crash) adopts the Job it made; the run keeps its admission, its quota
slot and its workspace, and gets a fresh run token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from lightkube import AsyncClient

from agentry_common import constants as c
from agentry_common.conditions import Reason
from agentry_common.models import Phase
from agentry_common.naming import job_name

from .. import kube
from ..builders.execution_status import INTERRUPTED_MESSAGE, observe, status_patch, terminal_job
from ..builders.execution_status import interrupted as pod_interrupted
from ..builders.job import effective_spec
from ..builders.kinds import Meta, Pod
from ..conditions import now_rfc3339
from ..settings import Settings
from .outcome import JOB_LABEL, JOBS, PODS, decide, write_status
from .resume_job import create_resume_job
from .state import Logger, State

# Jobs one Execution may have, one per interruption: a pod lost in a loop ends the run (the runtime
# itself ends one resumed three times without progress, with exit code 17).
MAX_JOBS = 100


def next_job_name(execution: Meta, current: str) -> str:
    """The Job after `current` of the Execution (its metadata)."""
    return job_name(execution.get("name", ""), f"{execution.get('uid', '')}/after/{current}")


def interrupted(status: Mapping[str, object]) -> bool:
    """The Execution's status says its pod stopped at a checkpoint (its next Job may be due)."""
    return status.get("phase") == Phase.RUNNING.value and status.get("reason") == Reason.INTERRUPTED.value


def _stopped_at_checkpoint(job: Mapping[str, object], pods: Sequence[Mapping[str, object]]) -> bool:
    """The Job ended at a checkpoint, or is ending: one of its pods exited INTERRUPTED, and the
    podFailurePolicy's first matching rule fails the Job on that code, so the Job controller starts
    no other pod (builders/job.py). An ended Job is read as it ended: a deadline is the run's end."""
    if terminal_job(job):
        return observe(job, pods).next_job
    return any(pod_interrupted(cast(Pod, p)) for p in pods)


async def continue_run(
    client: AsyncClient,
    config: Settings,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    logger: Logger,
) -> bool:
    """Start the next Job if the current one ended at a checkpoint; whether it did."""
    meta, status = body["metadata"], body.get("status") or {}
    ns, current = meta["namespace"], str(status.get("jobName") or "")
    job = await kube.get_or_none(client, JOBS, current, ns) if current else None
    if job is None:
        return False
    pods = [kube.to_dict(p) async for p in client.list(PODS, namespace=ns, labels={JOB_LABEL: current})]
    if not _stopped_at_checkpoint(job, pods):
        return False
    jobs = [j async for j in client.list(JOBS, namespace=ns, labels={c.LABEL_EXECUTION: meta["name"]})]
    if len(jobs) >= MAX_JOBS:  # an end, never a retry: the operator does not loop on it
        why = f"the run's pod was lost {len(jobs)} times; it is not resumed again"
        await decide(client, state, body, Phase.FAILED, Reason.RESUME_LIMIT_REACHED, why)
        return True
    name = next_job_name(meta, current)
    made = await create_resume_job(client, config, state, body, agent, name, effective_spec(agent, config))
    logger.info("execution %s: its pod stopped at a checkpoint; resuming in job %s", meta["name"], name)
    seen = observe(None if made is None or terminal_job(made) else made, [])
    seen.phase, seen.reason, seen.message = Phase.RUNNING, Reason.INTERRUPTED, INTERRUPTED_MESSAGE
    await write_status(
        client, state, body, status_patch(status, seen, meta.get("generation"), now_rfc3339(), name)
    )
    return True
