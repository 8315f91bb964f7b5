"""What every schedule backend shares: its errors, its protocol and the settings the Cloud Scheduler
backend needs. A module of its own so that backends import it without importing the package's
factory, which imports them."""

from __future__ import annotations

from typing import Any, Protocol

from agentry_common.conditions import Reason

from ..settings import Settings

# An Agent (or its spec) as the API server returns it.
Body = dict[str, Any]

# Settings the Cloud Scheduler backend needs, as (Settings field, environment variable).
CLOUD_SCHEDULER_REQUIRED = (
    ("cloud_scheduler_project", "AGENTRY_CLOUD_SCHEDULER_PROJECT (or GOOGLE_CLOUD_PROJECT)"),
    ("cloud_scheduler_location", "AGENTRY_CLOUD_SCHEDULER_LOCATION"),
    ("cloud_scheduler_target_url", "AGENTRY_CLOUD_SCHEDULER_TARGET_URL"),
    ("cloud_scheduler_service_account", "AGENTRY_CLOUD_SCHEDULER_SERVICE_ACCOUNT"),
)


class BackendError(Exception):
    """The backend could not do its part; `reason` goes to the Agent's Ready condition."""

    def __init__(self, reason: Reason, message: str, retry_seconds: float | None = 60) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_seconds = retry_seconds  # None: retrying without a change cannot help


class ScheduleBackend(Protocol):
    def ref(self, agent: Body) -> str: ...

    async def ensure(self, agent: Body) -> str: ...

    async def delete(self, ref: str) -> bool: ...

    async def close(self) -> None: ...


def cloud_scheduler_missing(config: Settings) -> list[str]:
    """The environment variables still needed to enable the Cloud Scheduler backend."""
    return [env for field, env in CLOUD_SCHEDULER_REQUIRED if not getattr(config, field)]


def not_configured(config: Settings) -> BackendError:
    missing = cloud_scheduler_missing(config)
    return BackendError(
        Reason.CLOUD_SCHEDULER_NOT_CONFIGURED,
        "spec.schedule.backend CloudScheduler needs operator settings that are not set: "
        + ", ".join(missing or ["(see the operator log)"])
        + " (Helm: operator.cloudScheduler.*; docs/gke.md)",
        retry_seconds=None,
    )
