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
import re
import signal
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.cloud import secretmanager_v1

from .fake_scheduler import SCHEDULER_SERVICE, FakeCloudScheduler
from .grpc_fake import Abort, FakeService, Handler, Recorded

__all__ = [
    "SCHEDULER_SERVICE",
    "SECRET_SERVICE",
    "Abort",
    "FakeCloudScheduler",
    "FakeSecretManager",
    "GcpFakes",
    "Recorded",
]

SECRET_SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"

_SECRET = re.compile(r"^projects/([^/]+)/secrets/([A-Za-z0-9_-]{1,255})$")
_VERSION = re.compile(r"^(projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255})/versions/([^/]+)$")


# --- Secret Manager ----------------------------------------------------------------------------


@dataclass
class _Version:
    data: bytes
    state: int = secretmanager_v1.SecretVersion.State.ENABLED


@dataclass
class _Secret:
    versions: list[_Version] = field(default_factory=list)


class FakeSecretManager(FakeService):
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
