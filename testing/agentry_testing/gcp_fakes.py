"""Local stand-ins for Google Secret Manager and Cloud Scheduler, speaking their real gRPC protocols.

Neither service has an emulator. These servers implement the methods Agentry uses with the request
and response message classes of the official client libraries (`google.cloud.secretmanager_v1`,
`google.cloud.scheduler_v1`), so the real clients talk to them through an explicit transport on an
insecure channel. State is in memory; every request is recorded for assertions.

    with GcpFakes() as fakes:
        version = fakes.secrets.add("projects/p/secrets/llm", b"sk-...")
        fakes.secrets.deny("projects/p/secrets/locked")          # PERMISSION_DENIED on access
        fakes.scheduler.fail_next("CreateJob", grpc.StatusCode.PERMISSION_DENIED, "no")
        ... AGENTRY_SECRET_MANAGER_ENDPOINT=fakes.address ...
        fakes.scheduler.jobs["projects/p/locations/l/jobs/j"].schedule
        [r.method for r in fakes.scheduler.requests]

As a process (both services on one port): `python -m agentry_testing.gcp_fakes --port N
[--secret projects/P/secrets/S=VALUE ...]`.

Behaviour follows the services' documented contracts where Agentry depends on them: `latest` resolves
to the newest enabled version; disabled versions answer FAILED_PRECONDITION; a job is created
ENABLED (its `state` is output only) and changes state only through PauseJob/ResumeJob; UpdateJob
honours `update_mask`; schedules must be unix-cron (5 fields) and time zones IANA names.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc  # type: ignore[import-untyped]
from google.cloud import scheduler_v1, secretmanager_v1
from google.protobuf import empty_pb2, timestamp_pb2

SECRET_SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
SCHEDULER_SERVICE = "google.cloud.scheduler.v1.CloudScheduler"

_SECRET = re.compile(r"^projects/([^/]+)/secrets/([A-Za-z0-9_-]{1,255})$")
_VERSION = re.compile(r"^(projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255})/versions/([^/]+)$")
_PARENT = re.compile(r"^projects/[A-Za-z0-9:.-]+/locations/[a-z0-9-]+$")
_JOB = re.compile(r"^(projects/[A-Za-z0-9:.-]+/locations/[a-z0-9-]+)/jobs/[A-Za-z0-9_-]{1,500}$")
# The Job fields UpdateJob may change (the others are output only or immutable).
_UPDATABLE = {
    "description",
    "schedule",
    "time_zone",
    "http_target",
    "pubsub_target",
    "app_engine_http_target",
    "retry_config",
    "attempt_deadline",
}


class Abort(Exception):
    """Raised by a method implementation: becomes the gRPC status of the call."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Recorded:
    method: str
    request: Any  # the request message, as the client library's own class
    metadata: dict[str, str]


@dataclass
class _Fault:
    code: grpc.StatusCode
    message: str
    times: int


Handler = Callable[[Any], Any]


class _Service:
    """A gRPC service whose methods are (request class, response serializer, implementation)."""

    name = ""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self._faults: dict[str, list[_Fault]] = {}

    def methods(self) -> dict[str, tuple[type[Any], Callable[[Any], bytes], Handler]]:
        raise NotImplementedError

    def fail_next(
        self, method: str, code: grpc.StatusCode, message: str = "injected", times: int = 1
    ) -> None:
        """Answer the next `times` calls of `method` (e.g. "CreateJob") with this status."""
        if method not in self.methods():
            raise ValueError(f"{self.name} has no method {method}")
        with self.lock:
            self._faults.setdefault(method, []).append(_Fault(code, message, times))

    def calls(self, method: str) -> list[Any]:
        """The recorded requests of one method, oldest first."""
        with self.lock:
            return [r.request for r in self.requests if r.method == method]

    def _fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method) or []
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                self._wrap(method, impl),
                request_deserializer=request_cls.deserialize,
                response_serializer=serialize,
            )
            for method, (request_cls, serialize, impl) in self.methods().items()
        }
        return grpc.method_handlers_generic_handler(self.name, handlers)

    def _wrap(self, method: str, impl: Handler) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            metadata = {k: str(v) for k, v in context.invocation_metadata()}
            with self.lock:
                self.requests.append(Recorded(method, request, metadata))
                fault = self._fault(method)
                if fault is None:
                    try:
                        return impl(request)
                    except Abort as exc:
                        fault = _Fault(exc.code, exc.message, 0)
            context.abort(fault.code, fault.message)

        return call


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    return ts


# --- Secret Manager ----------------------------------------------------------------------------


@dataclass
class _Version:
    data: bytes
    state: int = secretmanager_v1.SecretVersion.State.ENABLED


@dataclass
class _Secret:
    versions: list[_Version] = field(default_factory=list)


class FakeSecretManager(_Service):
    """AccessSecretVersion, GetSecretVersion, CreateSecret, AddSecretVersion, DisableSecretVersion."""

    name = SECRET_SERVICE

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, _Secret] = {}
        self.denied: set[str] = set()

    # -- test controls -------------------------------------------------------------------------

    def add(self, secret: str, data: bytes | str) -> str:
        """Add a version to `projects/P/secrets/S` (created if needed); returns the version's name."""
        if not _SECRET.match(secret):
            raise ValueError(f"not a secret name: {secret!r}")
        raw = data.encode() if isinstance(data, str) else data
        with self.lock:
            entry = self.secrets.setdefault(secret, _Secret())
            entry.versions.append(_Version(raw))
            return f"{secret}/versions/{len(entry.versions)}"

    def deny(self, secret: str) -> None:
        """Every access to this secret (any version) answers PERMISSION_DENIED."""
        with self.lock:
            self.denied.add(secret)

    def disable(self, version: str) -> None:
        with self.lock:
            self._version(version)[1].state = secretmanager_v1.SecretVersion.State.DISABLED

    # -- protocol ------------------------------------------------------------------------------

    def methods(self) -> dict[str, tuple[type[Any], Callable[[Any], bytes], Handler]]:
        sm = secretmanager_v1
        return {
            "AccessSecretVersion": (
                sm.AccessSecretVersionRequest,
                sm.AccessSecretVersionResponse.serialize,
                self._access,
            ),
            "GetSecretVersion": (sm.GetSecretVersionRequest, sm.SecretVersion.serialize, self._get_version),
            "CreateSecret": (sm.CreateSecretRequest, sm.Secret.serialize, self._create_secret),
            "AddSecretVersion": (sm.AddSecretVersionRequest, sm.SecretVersion.serialize, self._add_version),
            "DisableSecretVersion": (
                sm.DisableSecretVersionRequest,
                sm.SecretVersion.serialize,
                self._disable_version,
            ),
        }

    def _version(self, name: str) -> tuple[str, _Version]:
        """(resolved version name, version) or Abort, the way the service words it."""
        match = _VERSION.match(name)
        if not match:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value: {name}")
        secret, version = match.groups()
        if secret in self.denied:
            raise Abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'secretmanager.versions.access' denied for resource '{name}' "
                "(or it may not exist).",
            )
        entry = self.secrets.get(secret)
        if entry is None or not entry.versions:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"Secret [{secret}] not found or has no versions.")
        if version == "latest":
            enabled = [
                i
                for i, v in enumerate(entry.versions, 1)
                if v.state == secretmanager_v1.SecretVersion.State.ENABLED
            ]
            if not enabled:
                raise Abort(
                    grpc.StatusCode.FAILED_PRECONDITION, f"Secret [{secret}] has no enabled versions."
                )
            number = enabled[-1]
        elif version.isdigit() and 1 <= int(version) <= len(entry.versions):
            number = int(version)
        else:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{name}] not found.")
        return f"{secret}/versions/{number}", entry.versions[number - 1]

    def _version_message(self, name: str, version: _Version) -> secretmanager_v1.SecretVersion:
        return secretmanager_v1.SecretVersion(name=name, state=version.state)

    def _access(self, request: secretmanager_v1.AccessSecretVersionRequest) -> Any:
        name, version = self._version(request.name)
        if version.state != secretmanager_v1.SecretVersion.State.ENABLED:
            state = secretmanager_v1.SecretVersion.State(version.state).name
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"Secret Version [{name}] is in {state} state.")
        return secretmanager_v1.AccessSecretVersionResponse(
            name=name, payload=secretmanager_v1.SecretPayload(data=version.data)
        )

    def _get_version(self, request: secretmanager_v1.GetSecretVersionRequest) -> Any:
        name, version = self._version(request.name)
        return self._version_message(name, version)

    def _create_secret(self, request: secretmanager_v1.CreateSecretRequest) -> Any:
        name = f"{request.parent}/secrets/{request.secret_id}"
        if not _SECRET.match(name):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid secret name: {name}")
        if name in self.secrets:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
        self.secrets[name] = _Secret()
        return secretmanager_v1.Secret(name=name)

    def _add_version(self, request: secretmanager_v1.AddSecretVersionRequest) -> Any:
        if request.parent not in self.secrets:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.parent}] not found.")
        name = self.add(request.parent, request.payload.data)
        return self._version_message(name, self.secrets[request.parent].versions[-1])

    def _disable_version(self, request: secretmanager_v1.DisableSecretVersionRequest) -> Any:
        name, version = self._version(request.name)
        version.state = secretmanager_v1.SecretVersion.State.DISABLED
        return self._version_message(name, version)


# --- Cloud Scheduler ---------------------------------------------------------------------------


def _cron_problem(expr: str) -> str | None:
    fields = expr.split()
    if len(fields) != 5:
        return f"Schedule or time zone is invalid: {expr!r} is not a unix-cron expression (5 fields)"
    if not all(re.fullmatch(r"[0-9A-Za-z*/,\-]+", f) for f in fields):
        return f"Schedule or time zone is invalid: {expr!r}"
    return None


def _zone_problem(zone: str) -> str | None:
    if not zone or zone.lower() == "utc":
        return None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"Schedule or time zone is invalid: unknown time zone {zone!r}"
    return None


class FakeCloudScheduler(_Service):
    """Create/Get/Update/Pause/Resume/Delete/List Job."""

    name = SCHEDULER_SERVICE

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, scheduler_v1.Job] = {}

    def methods(self) -> dict[str, tuple[type[Any], Callable[[Any], bytes], Handler]]:
        s = scheduler_v1
        return {
            "CreateJob": (s.CreateJobRequest, s.Job.serialize, self._create),
            "GetJob": (s.GetJobRequest, s.Job.serialize, self._get),
            "UpdateJob": (s.UpdateJobRequest, s.Job.serialize, self._update),
            "PauseJob": (s.PauseJobRequest, s.Job.serialize, self._pause),
            "ResumeJob": (s.ResumeJobRequest, s.Job.serialize, self._resume),
            "DeleteJob": (s.DeleteJobRequest, empty_pb2.Empty.SerializeToString, self._delete),
            "ListJobs": (s.ListJobsRequest, s.ListJobsResponse.serialize, self._list),
        }

    @staticmethod
    def _validate(job: scheduler_v1.Job) -> None:
        problems = [_cron_problem(job.schedule), _zone_problem(job.time_zone)]
        if "http_target" in job:
            target = job.http_target
            if not re.match(r"^https?://[^/\s]+", target.uri):
                problems.append(f"HttpTarget.uri {target.uri!r} must be an absolute http(s) URL")
            if "oidc_token" in target and not target.oidc_token.service_account_email:
                problems.append("HttpTarget.oidc_token.service_account_email is required")
            if target.body and target.http_method not in (
                scheduler_v1.HttpMethod.POST,
                scheduler_v1.HttpMethod.PUT,
                scheduler_v1.HttpMethod.PATCH,
            ):
                problems.append("a body is allowed only with POST, PUT or PATCH")
        elif "pubsub_target" not in job and "app_engine_http_target" not in job:
            problems.append("a job needs a target")
        if len(job.description) > 500:
            problems.append("description is longer than 500 characters")
        found = [p for p in problems if p]
        if found:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(found))

    def _existing(self, name: str) -> scheduler_v1.Job:
        if not _JOB.match(name):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid job name: {name}")
        job = self.jobs.get(name)
        if job is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"Job not found: {name}.")
        return job

    @staticmethod
    def _copy(job: scheduler_v1.Job) -> scheduler_v1.Job:
        return cast(scheduler_v1.Job, scheduler_v1.Job.deserialize(scheduler_v1.Job.serialize(job)))

    def _create(self, request: scheduler_v1.CreateJobRequest) -> Any:
        if not _PARENT.match(request.parent):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid parent: {request.parent}")
        job = self._copy(request.job)
        match = _JOB.match(job.name)
        if not match or match.group(1) != request.parent:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Job name {job.name!r} is not under {request.parent}"
            )
        if job.name in self.jobs:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"Job {job.name} already exists.")
        self._validate(job)
        job.state = scheduler_v1.Job.State.ENABLED  # type: ignore[assignment]  # output only
        job.user_update_time = _now()
        self.jobs[job.name] = job
        return job

    def _get(self, request: scheduler_v1.GetJobRequest) -> Any:
        return self._existing(request.name)

    def _update(self, request: scheduler_v1.UpdateJobRequest) -> Any:
        current = self._existing(request.job.name)
        paths = list(request.update_mask.paths) or sorted(_UPDATABLE)
        unknown = [p for p in paths if p.split(".")[0] not in _UPDATABLE]
        if unknown:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Cannot update field(s): {', '.join(unknown)}")
        updated = self._copy(current)
        for path in paths:
            top = path.split(".")[0]
            if top in request.job:
                setattr(updated, top, getattr(request.job, top))
            else:
                updated.__delattr__(top)
        self._validate(updated)
        updated.user_update_time = _now()
        self.jobs[updated.name] = updated
        return updated

    def _pause(self, request: scheduler_v1.PauseJobRequest) -> Any:
        job = self._existing(request.name)
        job.state = scheduler_v1.Job.State.PAUSED  # type: ignore[assignment]
        return job

    def _resume(self, request: scheduler_v1.ResumeJobRequest) -> Any:
        job = self._existing(request.name)
        job.state = scheduler_v1.Job.State.ENABLED  # type: ignore[assignment]
        return job

    def _delete(self, request: scheduler_v1.DeleteJobRequest) -> Any:
        self._existing(request.name)
        del self.jobs[request.name]
        return empty_pb2.Empty()

    def _list(self, request: scheduler_v1.ListJobsRequest) -> Any:
        if not _PARENT.match(request.parent):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid parent: {request.parent}")
        names = sorted(n for n in self.jobs if n.startswith(request.parent + "/jobs/"))
        start = int(request.page_token or 0)
        size = request.page_size or 500
        page = names[start : start + size]
        token = str(start + size) if start + size < len(names) else ""
        return scheduler_v1.ListJobsResponse(jobs=[self.jobs[n] for n in page], next_page_token=token)


# --- The server ---------------------------------------------------------------------------------


class GcpFakes:
    """Both fakes on one local gRPC server (port 0: any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secrets = FakeSecretManager()
        self.scheduler = FakeCloudScheduler()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers(
            (self.secrets.generic_handler(), self.scheduler.generic_handler())
        )
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"cannot listen on {host}:{port}")
        self.address = f"{host}:{self.port}"

    def start(self) -> GcpFakes:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> GcpFakes:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentry_testing.gcp_fakes",
        description="Local Secret Manager and Cloud Scheduler (gRPC, insecure, in memory).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="projects/P/secrets/S=VALUE",
        help="add a secret version at start (repeatable)",
    )
    args = parser.parse_args(argv)
    fakes = GcpFakes(args.host, args.port)
    for item in args.secret:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--secret needs NAME=VALUE, got {item!r}")
        fakes.secrets.add(name, value)
    fakes.start()
    print(f"gcp fakes listening on {fakes.address}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: fakes.stop())
    try:
        fakes.wait()
    except KeyboardInterrupt:
        fakes.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
