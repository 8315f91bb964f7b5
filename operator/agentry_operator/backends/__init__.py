"""Schedule backends: where an Agent's `spec.schedule` lives outside the cluster's own objects.

The CronJob backend is a Kubernetes child (builders/cronjob.py, applied by handlers/agent.py). Backends
here keep the schedule in an external service and are reached through `ScheduleBackend`:

* `ref(agent)` names the external object, deterministically from the Agent's namespace, name and uid,
  so a re-run after a crash computes the same name; it is stored in `status.scheduleRef` *before* the
  object is created, so a half-done reconcile always leaves a trace the finalizer can clean up.
* `ensure(agent)` creates or updates it and pauses/resumes it from `spec.schedule.suspend`
  (idempotent: get, then create or update only what differs);
* `delete(ref)` removes it (False if it was already gone).

Failures are `BackendError`s with a CamelCase reason for the Agent's Ready condition. This module is
import-light: the Google client libraries load only when the Cloud Scheduler backend is configured.
"""

from __future__ import annotations

import logging

from agentry_common.models import ScheduleBackend as BackendKind

from ..settings import Settings
from .base import (
    CLOUD_SCHEDULER_REQUIRED,
    BackendError,
    Body,
    ScheduleBackend,
    cloud_scheduler_missing,
    not_configured,
)

__all__ = [
    "CLOUD_SCHEDULER_REQUIRED",
    "BackendError",
    "ScheduleBackend",
    "cloud_scheduler_backend",
    "cloud_scheduler_missing",
    "is_cloud_ref",
    "needs_cloud_cleanup",
    "not_configured",
    "uses_cloud_scheduler",
]


def uses_cloud_scheduler(spec: Body) -> bool:
    schedule = spec.get("schedule") or {}
    return bool(schedule) and schedule.get("backend") == BackendKind.CLOUD_SCHEDULER.value


def is_cloud_ref(ref: str | None) -> bool:
    """A status.scheduleRef naming a Cloud Scheduler job (projects/P/locations/L/jobs/J)."""
    return isinstance(ref, str) and ref.startswith("projects/") and "/jobs/" in ref


def needs_cloud_cleanup(body: Body, enabled: bool = True) -> bool:
    """Whether deleting this Agent must first delete a Cloud Scheduler job (keeps the finalizer on).

    True while the Agent uses the backend (if this operator has it `enabled`: otherwise no job can
    exist yet), and whenever status.scheduleRef names a job, also after the Agent moved away from the
    backend until the old job's deletion is recorded: a deletion in between cannot leak it.
    """
    ref = (body.get("status") or {}).get("scheduleRef")
    return is_cloud_ref(ref) or (enabled and uses_cloud_scheduler(body.get("spec") or {}))


def cloud_scheduler_backend(config: Settings, log: logging.Logger) -> ScheduleBackend | None:
    """The Cloud Scheduler backend if configured; the Google client libraries load only then."""
    missing = cloud_scheduler_missing(config)
    if missing:
        attempted = config.cloud_scheduler_location or config.cloud_scheduler_target_url
        if attempted or config.cloud_scheduler_service_account:  # a partial setup is a mistake: say so
            log.warning("Cloud Scheduler backend disabled; not set: %s", ", ".join(missing))
        return None
    from .cloudscheduler import CloudSchedulerBackend, CloudSchedulerSettings

    try:
        return CloudSchedulerBackend(CloudSchedulerSettings.from_config(config))
    except BackendError as exc:
        log.warning("Cloud Scheduler backend disabled: %s", exc.message)
        return None
