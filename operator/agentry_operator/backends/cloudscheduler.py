"""Cloud Scheduler backend: one Google Cloud Scheduler job per Agent with `backend: CloudScheduler`.

The job calls the API's run endpoint with an OIDC token (docs/gke.md, "Cloud Scheduler" has the exact
request); the API then creates the Execution, so a scheduled run is the same object as any other.

* Name: `projects/P/locations/L/jobs/agentry-<namespace>-<name>-<hash of uid>` (`job_id`).
* Schedule and time zone from spec.schedule (cron macros become 5-field crons: Cloud Scheduler takes
  unix-cron only); `suspend: true` pauses the job, `false` resumes it.
* Idempotent: get, create if missing (409: someone was first, read it), update only the fields that
  differ (404 during update: create), then pause/resume if the state differs; delete tolerates 404.

The client is the real `google.cloud.scheduler_v1` async client: default credentials (Workload
Identity) in production, or an insecure channel to `cloud_scheduler_endpoint` (tests, local fakes).
Building jobs (`build_job`, `changed_fields`) is pure and unit-tested without a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import Formatter
from typing import Any, TypedDict
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.api_core import retry_async
from google.auth import exceptions as auth_exceptions
from google.cloud import scheduler_v1
from google.protobuf import duration_pb2, field_mask_pb2

from agentry_common.conditions import Reason
from agentry_common.models import ScheduleSpec, Trigger
from agentry_common.naming import short_hash

from ..settings import Settings
from .base import BackendError, cloud_scheduler_missing, not_configured

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# What every job sends: the API creates an Execution with trigger Schedule.
RUN_BODY = json.dumps({"trigger": Trigger.SCHEDULE.value}, separators=(",", ":")).encode()
RUN_HEADERS = {"Content-Type": "application/json"}
# The API answers 202 at once; a slow answer is a failed attempt, retried with backoff. Retries are
# safe: the API names the Execution after X-CloudScheduler-ScheduleTime (one per tick).
ATTEMPT_DEADLINE_SECONDS = 30
RETRY_COUNT = 3
MIN_BACKOFF_SECONDS = 5
MAX_BACKOFF_SECONDS = 300
# The Job fields this backend owns; UpdateJob's mask is the subset that differs.
OWNED_FIELDS = ("description", "schedule", "time_zone", "http_target", "retry_config", "attempt_deadline")
_PLACEHOLDERS = {"namespace", "name"}


class _CallOptions(TypedDict):
    """The retry and timeout of each call to the Cloud Scheduler API."""

    retry: retry_async.AsyncRetry
    timeout: float


@dataclass(frozen=True)
class CloudSchedulerSettings:
    project: str
    location: str
    target_url: str
    path: str
    service_account: str
    audience: str
    endpoint: str | None
    timeout: float
    retry_seconds: float = 60.0

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @classmethod
    def from_config(cls, config: Settings) -> CloudSchedulerSettings:
        """The backend's settings, or BackendError(CloudSchedulerNotConfigured) naming what is missing."""
        if cloud_scheduler_missing(config):
            raise not_configured(config)
        path = config.cloud_scheduler_path
        fields = {f for _, f, _, _ in Formatter().parse(path) if f is not None}
        if not path.startswith("/") or not fields <= _PLACEHOLDERS:
            raise BackendError(
                Reason.CLOUD_SCHEDULER_NOT_CONFIGURED,
                f"AGENTRY_CLOUD_SCHEDULER_PATH {path!r} must start with / and may use only "
                "{namespace} and {name}",
                retry_seconds=None,
            )
        target = str(config.cloud_scheduler_target_url).rstrip("/")
        if not target.startswith(("https://", "http://")):
            raise BackendError(
                Reason.CLOUD_SCHEDULER_NOT_CONFIGURED,
                f"AGENTRY_CLOUD_SCHEDULER_TARGET_URL {target!r} must be an http(s) URL",
                retry_seconds=None,
            )
        return cls(
            project=str(config.cloud_scheduler_project),
            location=str(config.cloud_scheduler_location),
            target_url=target,
            path=path,
            service_account=str(config.cloud_scheduler_service_account),
            audience=config.cloud_scheduler_audience or target,
            endpoint=config.cloud_scheduler_endpoint,
            timeout=config.cloud_scheduler_timeout_seconds,
            retry_seconds=config.cloud_scheduler_retry_seconds,
        )


# --- Pure: names and the job ------------------------------------------------------------------


def job_id(namespace: str, name: str, uid: str) -> str:
    """`agentry-<namespace>-<name>-<8 hex of uid>`; Cloud Scheduler job ids allow [A-Za-z0-9_-]."""
    readable = f"agentry-{namespace}-{name}".replace(".", "_")
    return f"{readable}-{short_hash(uid, 8)}"


def job_name(settings: CloudSchedulerSettings, agent: dict[str, Any]) -> str:
    meta = agent["metadata"]
    return f"{settings.parent}/jobs/{job_id(meta['namespace'], meta['name'], meta['uid'])}"


def unix_cron(expr: str) -> str:
    return MACROS.get(expr.strip(), expr.strip())


def target_uri(settings: CloudSchedulerSettings, namespace: str, name: str) -> str:
    path = settings.path.format(namespace=quote(namespace, safe=""), name=quote(name, safe=""))
    return settings.target_url + path


def build_job(agent: dict[str, Any], settings: CloudSchedulerSettings) -> scheduler_v1.Job:
    """The job an Agent's schedule asks for (its `state` is set by pause/resume, not here)."""
    meta = agent["metadata"]
    schedule = ScheduleSpec.model_validate(agent["spec"]["schedule"])
    return scheduler_v1.Job(
        name=job_name(settings, agent),
        description=f"Agentry schedule of Agent {meta['namespace']}/{meta['name']} (uid {meta['uid']})"[:500],
        schedule=unix_cron(schedule.cron),
        time_zone=schedule.time_zone,
        http_target=scheduler_v1.HttpTarget(
            uri=target_uri(settings, meta["namespace"], meta["name"]),
            http_method=scheduler_v1.HttpMethod.POST,
            headers=RUN_HEADERS,
            body=RUN_BODY,
            oidc_token=scheduler_v1.OidcToken(
                service_account_email=settings.service_account, audience=settings.audience
            ),
        ),
        retry_config=scheduler_v1.RetryConfig(
            retry_count=RETRY_COUNT,
            min_backoff_duration=duration_pb2.Duration(seconds=MIN_BACKOFF_SECONDS),
            max_backoff_duration=duration_pb2.Duration(seconds=MAX_BACKOFF_SECONDS),
        ),
        attempt_deadline=duration_pb2.Duration(seconds=ATTEMPT_DEADLINE_SECONDS),
    )


def _owned(job: scheduler_v1.Job, field: str) -> object:
    """A comparable view of one owned field (headers: only the ones we set; the service adds some)."""
    if field == "http_target":
        if "http_target" not in job:
            return None
        t = job.http_target
        return (
            t.uri,
            int(t.http_method),
            {k: t.headers.get(k) for k in RUN_HEADERS},
            bytes(t.body),
            t.oidc_token.service_account_email if "oidc_token" in t else None,
            t.oidc_token.audience if "oidc_token" in t else None,
        )
    if field == "retry_config":
        r = job.retry_config
        return (r.retry_count, r.min_backoff_duration, r.max_backoff_duration)
    return getattr(job, field)


def changed_fields(existing: scheduler_v1.Job, desired: scheduler_v1.Job) -> list[str]:
    """The UpdateJob mask: owned fields whose value differs."""
    return [f for f in OWNED_FIELDS if _owned(existing, f) != _owned(desired, f)]


# --- The backend ------------------------------------------------------------------------------


def new_client(settings: CloudSchedulerSettings) -> scheduler_v1.CloudSchedulerAsyncClient:
    if settings.endpoint:
        import grpc  # type: ignore[import-untyped]
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
            CloudSchedulerGrpcAsyncIOTransport,
        )

        transport = CloudSchedulerGrpcAsyncIOTransport(
            channel=grpc.aio.insecure_channel(settings.endpoint),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        return scheduler_v1.CloudSchedulerAsyncClient(transport=transport)
    return scheduler_v1.CloudSchedulerAsyncClient()  # default credentials: Workload Identity on GKE


# What a call to the service can raise besides a bug: its answers, credentials, the network.
EXPECTED = (gexc.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError, TimeoutError)


def _failure(action: str, name: str, exc: Exception, retry_seconds: float) -> BackendError:
    if isinstance(exc, gexc.GoogleAPICallError):
        detail = f"{type(exc).__name__}: {exc.message}"
        return BackendError(Reason.CLOUD_SCHEDULER_ERROR, f"{action} {name}: {detail}", retry_seconds)
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return BackendError(
            Reason.CLOUD_SCHEDULER_UNAVAILABLE,
            f"{action} {name}: no usable Google credentials ({type(exc).__name__}: {exc}); "
            "on GKE, check the operator's Workload Identity binding",
            retry_seconds,
        )
    # RetryError (transient failures until the deadline), timeouts, connection problems.
    detail = f"{type(exc).__name__}: {exc}"
    return BackendError(Reason.CLOUD_SCHEDULER_UNAVAILABLE, f"{action} {name}: {detail}", retry_seconds)


class CloudSchedulerBackend:
    def __init__(
        self,
        settings: CloudSchedulerSettings,
        client: scheduler_v1.CloudSchedulerAsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self._client = client

    def _opts(self) -> _CallOptions:
        """Per call: transient errors retried with backoff until the deadline, never longer."""
        timeout = self.settings.timeout
        retry = retry_async.AsyncRetry(
            predicate=retry_async.if_transient_error, initial=0.2, maximum=5.0, timeout=timeout
        )
        return {"retry": retry, "timeout": timeout}

    @property
    def client(self) -> scheduler_v1.CloudSchedulerAsyncClient:
        # Created on first use: missing credentials then show on the Agent, not as a crash at start.
        if self._client is None:
            self._client = new_client(self.settings)
        return self._client

    def ref(self, agent: dict[str, Any]) -> str:
        return job_name(self.settings, agent)

    async def ensure(self, agent: dict[str, Any]) -> str:
        desired = build_job(agent, self.settings)
        suspend = bool(agent["spec"]["schedule"].get("suspend"))
        action = "reading Cloud Scheduler job"
        try:
            job = await self._get(desired.name)
            if job is None:
                action = "creating Cloud Scheduler job"
                job = await self._create(desired)
            action = "updating Cloud Scheduler job"
            mask = changed_fields(job, desired)
            if job.state == scheduler_v1.Job.State.UPDATE_FAILED:
                mask = list(OWNED_FIELDS)  # the service asks for the update to be retried
            if mask:
                try:
                    job = await self.client.update_job(
                        job=desired,
                        update_mask=field_mask_pb2.FieldMask(paths=mask),
                        **self._opts(),
                    )
                except gexc.NotFound:  # deleted behind our back
                    job = await self._create(desired)
            want = scheduler_v1.Job.State.PAUSED if suspend else scheduler_v1.Job.State.ENABLED
            if job.state != want:
                action = "pausing Cloud Scheduler job" if suspend else "resuming Cloud Scheduler job"
                method = self.client.pause_job if suspend else self.client.resume_job
                await method(name=desired.name, **self._opts())
        except EXPECTED as exc:
            raise _failure(action, desired.name, exc, self.settings.retry_seconds) from exc
        return str(desired.name)

    async def delete(self, ref: str) -> bool:
        try:
            await self.client.delete_job(name=ref, **self._opts())
        except gexc.NotFound:
            return False
        except EXPECTED as exc:
            raise _failure("deleting Cloud Scheduler job", ref, exc, self.settings.retry_seconds) from exc
        return True

    async def close(self) -> None:
        if self._client is not None:
            await self._client.transport.close()  # type: ignore[no-untyped-call]

    async def _get(self, name: str) -> scheduler_v1.Job | None:
        try:
            return await self.client.get_job(name=name, **self._opts())
        except gexc.NotFound:
            return None

    async def _create(self, desired: scheduler_v1.Job) -> scheduler_v1.Job:
        try:
            return await self.client.create_job(parent=self.settings.parent, job=desired, **self._opts())
        except gexc.AlreadyExists:  # another reconcile was first: use its job
            job = await self._get(desired.name)
            if job is None:
                raise
            return job
