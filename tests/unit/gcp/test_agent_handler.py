"""handlers/agent.py without any server: the delete handler of an operator without Cloud Scheduler
settings. Everything that talks to the API server or Cloud Scheduler (ordering of the recorded job
name and the create, crash recovery, Ready on failures, moving to CronJob, deleting jobs) runs on a
real control plane: tests/integration/gcp/test_standins_agent_handler.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from agentry_operator.handlers.agent import delete_agent_schedule
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

LOG = logging.getLogger("test")
JOB = "projects/p/locations/l/jobs/agentry-ns-news-1"


def agent(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "news", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": {
            "instructions": "x",
            "model": {"name": "m"},
            "schedule": {"cron": "0 8 * * 1", "backend": "CloudScheduler"},
        },
        "status": status or {},
    }


def test_delete_handler_without_settings_waits_unless_nothing_was_created() -> None:
    asyncio.run(delete_agent_schedule(Settings(), None, agent(), LOG))  # nothing recorded: done
    with pytest.raises(kopf.TemporaryError, match="remove the finalizer"):
        asyncio.run(delete_agent_schedule(Settings(), None, agent(status={"scheduleRef": JOB}), LOG))
