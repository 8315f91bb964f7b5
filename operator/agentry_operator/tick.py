"""The schedule tick: the CronJob's pod runs this to create one Execution with trigger Schedule.

The Execution's name is derived from the scheduled minute, so a retried tick pod creates nothing new.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from typing import Any

from lightkube import ApiError, AsyncClient

from agentry_common import constants as c
from agentry_common.models import Trigger
from agentry_common.naming import scheduled_execution_name

from .builders.kinds import Meta, OwnerReference
from .kube import Execution

# The Agent's fixed jitter offset (spec.schedule.jitterSeconds): the tick waits this long first.
ENV_TICK_DELAY = "AGENTRY_TICK_DELAY_SECONDS"
# The Agent's owner label (empty: none), which the Execution carries for the run gate.
ENV_TICK_OWNER = "AGENTRY_TICK_OWNER"


def scheduled_time(job_name: str) -> dt.datetime:
    """The CronJob controller names Jobs <cronjob>-<minutes since the epoch of the tick>."""
    minutes = int(job_name.rsplit("-", 1)[1])
    return dt.datetime.fromtimestamp(minutes * 60, dt.UTC)


def build_execution(
    agent: str,
    namespace: str,
    when: dt.datetime,
    owner: OwnerReference | None = None,
    owner_label: str = "",
) -> dict[str, Any]:
    """The Execution of `agent`'s fire time `when`; `owner`: the Agent's owner reference, when the
    creator knows its uid (the operator), so the Execution needs no adoption later; `owner_label`:
    the Agent's `agentry.dev/owner` label, which its runs carry (the run gate)."""
    labels = {c.LABEL_AGENT: agent[:63], c.LABEL_TRIGGER: Trigger.SCHEDULE.value}
    if owner_label:
        labels[c.LABEL_OWNER] = owner_label
    metadata: Meta = {
        "name": scheduled_execution_name(agent, int(when.timestamp())),
        "namespace": namespace,
        "labels": labels,
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.EXECUTION_KIND,
        "metadata": metadata,
        "spec": {
            "agentRef": {"name": agent},
            "trigger": Trigger.SCHEDULE.value,
            "scheduledTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


async def create(client: AsyncClient, agent: str, namespace: str, job: str, owner_label: str = "") -> str:
    """The tick's one write: the Execution of Job `job`'s scheduled time (409: it exists already)."""
    manifest = build_execution(agent, namespace, scheduled_time(job), owner_label=owner_label)
    try:
        await client.create(Execution.from_dict(manifest))
    except ApiError as exc:
        if exc.status.code != 409:
            raise
    return str(manifest["metadata"]["name"])


async def tick(agent: str, namespace: str, job: str, owner_label: str = "") -> str:
    client = AsyncClient(field_manager="agentry-tick")
    try:
        return await create(client, agent, namespace, job, owner_label)
    finally:
        await client.close()


def main() -> int:
    agent, namespace = os.environ[c.ENV_AGENT], os.environ[c.ENV_NAMESPACE]
    time.sleep(max(int(os.environ.get(ENV_TICK_DELAY) or 0), 0))
    owner_label = os.environ.get(ENV_TICK_OWNER, "")
    name = asyncio.run(tick(agent, namespace, os.environ["AGENTRY_TICK_JOB"], owner_label))
    print(f"execution {namespace}/{name} created for agent {agent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
