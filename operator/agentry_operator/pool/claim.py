"""The claim: a run started in a warm pod instead of a Job of its own (docs/runs.md, "Warm pool").

Crash-safe and idempotent, one run per Execution across restarts and replicas:
1. *record* the chosen warm Job in the Execution's status (`jobName`, the run's progress marker, and
   `Pooled=Unknown/Claiming`), with a resourceVersion precondition;
2. *take* the Job: the run's labels, annotations, owner (the Execution) and deadline, with the Job's
   resourceVersion as precondition, so two claims cannot take one pod;
3. label the pod as the run's (its NetworkPolicy, the egress proxy's lookup, the operator's watch);
4. *deliver* the run's environment and inputs, sealed with the pod's own key (agentry_common.pool);
5. write `Pooled=True/Claimed`.
A restart finds `Claiming` and finishes the claim it recorded (every step is repeatable: the pod
acknowledges the same claim again). A warm pod gone, or taken by another claim, makes the run pick
again, and after MAX_PICKS start as a Job.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import httpx
from lightkube import ApiError, AsyncClient

from agentry_common import pool as p
from agentry_common.conditions import ConditionType, Reason
from agentry_common.models import ExecutionStatus
from agentry_common.naming import job_name

from .. import kube
from ..builders.execution_status import POD_ENDED, POD_RUNNING, terminal_job
from ..builders.kinds import Condition
from ..conditions import get_condition, now_rfc3339, set_condition
from ..handlers.outcome import JOB_LABEL, JOBS, PODS, key_of, resync, write_status
from ..handlers.state import State, phase_of
from ..settings import Settings
from .builders import (
    Doc,
    claim_request,
    claimed_by,
    needs_job,
    node,
    pod_patch,
    profile_of,
    secret_values,
    take_patch,
)
from .pools import Pools, Warm

log = logging.getLogger("agentry.operator")

MAX_PICKS = 3  # warm pods tried before the run starts as a Job
DELIVER_SECONDS = 10.0  # a warm pod just started may not listen yet: connections are retried this long
ATTEMPT_SECONDS = 2.0


@dataclass(frozen=True)
class Claim:
    """A run on its way into a warm pod: what every step of its claim reads or writes."""

    client: AsyncClient
    config: Settings
    state: State
    body: dict[str, object]
    run_job: Doc  # the Job it would start as (the warm Job takes its labels, owner and deadline)
    token_secret: str | None


class Step(Enum):
    CLAIMED = "claimed"
    GONE = "gone"  # the pod or its Job is gone, ended, or does not answer
    TAKEN = "taken"  # another claim took it


def claiming(status: Mapping[str, object]) -> bool:
    """Whether this status records a claim not finished yet (a restart finishes it)."""
    conditions = status.get("conditions")
    found = get_condition(conditions if isinstance(conditions, list) else None, ConditionType.POOLED)
    return found is not None and found.get("reason") == Reason.CLAIMING


def _conditions(state: State, body: Doc) -> list[Condition]:
    current = state.executions.get(key_of(dict(body)), dict(body)).get("status") or {}
    return list(current.get("conditions") or [])


def pooled(
    state: State,
    body: Doc,
    status: bool | None,
    reason: Reason,
    message: str,
    base: list[Condition] | None = None,
) -> list[Condition]:
    """The run's conditions (`base`, else the latest status the operator knows) with `Pooled` set."""
    gen = node(body, "metadata").get("generation")
    generation = gen if isinstance(gen, int) else None
    current = _conditions(state, body) if base is None else base
    return set_condition(current, ConditionType.POOLED, status, reason, message, generation, now_rfc3339())


async def start_pooled(claim: Claim, correlation_id: str, base: list[Condition]) -> list[Condition] | None:
    """Start the run in a warm pod: None once claimed (its status written); else the run's conditions
    (`base`, as the Job's status would write them) with `Pooled=False` saying why it starts as a Job."""
    client, state, body, run_job = claim.client, claim.state, claim.body, claim.run_job
    pools = state.pools
    ns = str(node(body, "metadata")["namespace"])
    if pools is None:
        return pooled(state, body, False, Reason.NO_POOL, "no warm pool is configured", base)
    why = needs_job(run_job, claim.token_secret)
    if why is not None:
        return pooled(state, body, False, Reason.NEEDS_JOB, why, base)
    shape = profile_of(run_job)
    name = pools.pool_for(ns, shape)
    if name is None:
        return pooled(state, body, False, Reason.NO_POOL, f"no pool in {ns} serves {shape.describe()}", base)
    meta = node(body, "metadata")
    own = job_name(str(meta["name"]), str(meta["uid"]))
    if await kube.get_or_none(client, JOBS, own, ns) is not None:  # made by an attempt that crashed
        return pooled(state, body, False, Reason.NEEDS_JOB, f"its Job {own} exists already (adopted)", base)
    pools.ask(ns, name)
    try:
        return await _claim(claim, correlation_id, base, name)
    finally:
        pools.refill()


async def _claim(
    claim: Claim, correlation_id: str, base: list[Condition], name: str
) -> list[Condition] | None:
    """Claim a warm pod of pool `name`, picking again when one is gone or taken (start_pooled)."""
    state, body = claim.state, claim.body
    pools = state.pools
    assert pools is not None
    ns = str(node(body, "metadata")["namespace"])
    for _ in range(MAX_PICKS):
        warm = pools.take(ns, name)
        if warm is None:
            return pooled(state, body, False, Reason.POOL_EMPTY, f"pool {name} had no warm pod ready", base)
        try:
            if not await _record(claim, warm.job, correlation_id, name, base):
                pools.give_back(ns, name, warm)
                return None  # another claim of this run was recorded first: its reconcile finishes it
            step = await finish(claim, warm.job, warm)
        finally:
            pools.done(ns, warm.job)
        if step is Step.CLAIMED:
            return None
        await release(claim.client, state, body, warm.job, delete=step is Step.GONE)
        base = _conditions(state, body)
    why = f"{MAX_PICKS} warm pods of pool {name} were gone or taken"
    return pooled(state, body, False, Reason.CLAIM_FAILED, why, base)


async def _record(claim: Claim, job: str, correlation_id: str, pool: str, base: list[Condition]) -> bool:
    """Step 1: the claim in the Execution's status, if no other claim is recorded there (False then)."""
    client, state, body = claim.client, claim.state, claim.body
    key = key_of(body)
    current = state.executions.get(key, body)
    message = f"claiming warm Job {job} of pool {pool}"
    for _ in range(2):
        conditions = pooled(state, current, None, Reason.CLAIMING, message, base)
        status = ExecutionStatus(job_name=job, correlation_id=correlation_id, conditions=conditions)
        version = str(node(current, "metadata").get("resourceVersion") or "") or None
        try:
            sent = await kube.patch_status(client, kube.Execution, key[1], key[0], status, version)
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            fresh = await kube.get_or_none(client, kube.Execution, key[1], key[0])
            if fresh is None or (fresh.get("status") or {}).get("jobName"):
                return False
            current = state.seen_execution(fresh)
            continue
        state.wrote_status(key, sent)
        return True
    return False


async def finish(claim: Claim, job: str, warm: Warm | None = None) -> Step:
    """Steps 2-5 for the warm Job recorded in the run's status (again after a restart: each repeats)."""
    client, state, body, run_job = claim.client, claim.state, claim.body, claim.run_job
    ns = str(node(body, "metadata")["namespace"])
    name = str(node(body, "metadata")["name"])
    found, token = await asyncio.gather(
        kube.get_or_none(client, JOBS, job, ns), _token_data(client, ns, claim.token_secret)
    )
    if found is None or found["metadata"].get("deletionTimestamp"):
        return Step.GONE
    if claimed_by(found) not in ("", name):
        return Step.TAKEN
    if not claimed_by(found):
        step = await _take(client, run_job, found)
        if step is not Step.CLAIMED:
            return step
    if warm is None:
        found_pod = Step.CLAIMED if terminal_job(found) else await _warm_pod(client, ns, job)
        if isinstance(found_pod, Step):
            if found_pod is Step.CLAIMED:
                await _claimed(claim, job, f"claimed the pod of warm Job {job}, which has ended")
            return found_pod
        warm = found_pod
    try:
        await kube.patch_merge(client, kube.Pod, warm.pod, ns, pod_patch(run_job))
    except ApiError as exc:
        if exc.status.code == 404:
            return Step.GONE
        raise
    pools = state.pools
    if pools is None:
        raise RuntimeError("a claim without pools")
    step = await deliver(
        pools,
        claim.config,
        ns,
        warm,
        p.seal_request(await pools.key_of(ns, job), claim_request(body, run_job, token)),
    )
    if step is Step.CLAIMED:
        await _claimed(claim, job, f"claimed warm pod {warm.pod} (Job {job})")
    return step


async def _claimed(claim: Claim, job: str, message: str) -> None:
    """Step 5: `Pooled=True`, then the pod's events while the claim was in flight, which outcome.on_pod
    left to it, are read."""
    client, state, body = claim.client, claim.state, claim.body
    conditions = pooled(state, body, True, Reason.CLAIMED, message)
    await write_status(client, state, dict(body), ExecutionStatus(conditions=conditions))
    log.info("execution %s: %s", node(body, "metadata")["name"], message)
    await resync(client, state, state.executions.get(key_of(dict(body)), dict(body)), job)


async def _take(client: AsyncClient, run_job: Doc, found: dict[str, object]) -> Step:
    """Step 2, with the Job's resourceVersion as precondition: a conflict is this claim's own earlier
    take (a retry), another claim's, or the Job controller's status write (then once more)."""
    for _ in range(2):
        if terminal_job(found):
            return Step.GONE
        meta = node(found, "metadata")
        name, ns = str(meta["name"]), str(meta["namespace"])
        try:
            await kube.patch_merge(
                client, JOBS, name, ns, take_patch(run_job, found, dt.datetime.now(dt.UTC))
            )
            return Step.CLAIMED
        except ApiError as exc:
            if exc.status.code == 404:
                return Step.GONE
            if exc.status.code != 409:
                raise
        again = await kube.get_or_none(client, JOBS, name, ns)
        if again is None:
            return Step.GONE
        if claimed_by(again):
            return Step.CLAIMED if claimed_by(again) == claimed_by(run_job) else Step.TAKEN
        found = again
    return Step.TAKEN


async def _warm_pod(client: AsyncClient, ns: str, job: str) -> Warm | Step:
    """The running pod of a warm Job this run took (a restart: the pool's memory of it is gone).
    CLAIMED when its pod has ended: it ran the delivered claim before the restart (or died first),
    and the run's outcome, read from the pod like any run's, says which; never picked again, since
    a run that went on in a second pod would repeat what the first did."""
    ended = False
    async for found in client.list(PODS, namespace=ns, labels={JOB_LABEL: job}):
        pod = kube.to_dict(found)
        status = pod.get("status") or {}
        if status.get("phase") == POD_RUNNING and status.get("podIP"):
            return Warm(job, str(pod["metadata"]["name"]), str(status["podIP"]))
        ended = ended or status.get("phase") in POD_ENDED
    return Step.CLAIMED if ended else Step.GONE


async def _token_data(client: AsyncClient, ns: str, token_secret: str | None) -> dict[str, str]:
    if token_secret is None:
        return {}
    secret = await kube.get_or_none(client, kube.Secret, token_secret, ns)
    if secret is None:
        raise LookupError(f"run token Secret {token_secret} is gone")
    return secret_values(secret)


async def deliver(pools: Pools, config: Settings, ns: str, warm: Warm, sealed: bytes) -> Step:
    """Step 4: POST the sealed claim to the pod's claim port; connections refused (not listening yet)
    are retried for DELIVER_SECONDS."""
    host = f"[{warm.ip}]" if ":" in warm.ip else warm.ip
    url = f"http://{host}:{config.pool_claim_port}{p.CLAIM_PATH}"
    loop = asyncio.get_running_loop()
    until = loop.time() + DELIVER_SECONDS
    while True:
        try:
            answer = await pools.http().post(url, content=sealed, timeout=ATTEMPT_SECONDS)
            break
        except httpx.TransportError as exc:
            if loop.time() > until:
                log.warning("warm pod %s/%s did not answer its claim: %s", ns, warm.pod, exc)
                return Step.GONE
            await asyncio.sleep(0.05)
    if answer.status_code not in (200, 409):
        log.warning("warm pod %s/%s refused its claim: HTTP %s", ns, warm.pod, answer.status_code)
        return Step.GONE
    try:
        said = p.open_answer(await pools.key_of(ns, warm.job), answer.content)
    except (p.SealError, ValueError):
        return Step.GONE  # not the pod we made: never trusted
    return Step.CLAIMED if said.accepted else Step.TAKEN


async def release(client: AsyncClient, state: State, body: dict[str, object], job: str, delete: bool) -> None:
    """Undo a claim that cannot finish: the status no longer names the Job (first, so that its deletion
    is not read as the run's Job lost), then a Job this claim took is deleted."""
    key = key_of(body)
    phase = phase_of(state.executions.get(key, body))
    if phase is not None and phase.terminal:
        return  # its outcome was read meanwhile (a restart's resync): that Job was the run's
    conditions = pooled(state, body, None, Reason.CLAIM_FAILED, f"warm Job {job} was gone or taken")
    await write_status(client, state, dict(body), ExecutionStatus(job_name=None, conditions=conditions))
    if delete:
        found = await kube.get_or_none(client, JOBS, job, key[0])
        if found is not None and claimed_by(found) == key[1]:
            await kube.delete_quietly(client, kube.Job, job, key[0])
