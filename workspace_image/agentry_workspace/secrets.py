"""Agent secrets from Google Secret Manager, resolved once at the start of a run.

The operator passes `spec.secrets[].secretManager` references (never values) as
`AGENTRY_SECRET_MANAGER_REFS` = JSON {"ENV_NAME": "projects/P/secrets/S/versions/V"}. Each is read
with the run's own Google identity (Workload Identity) and becomes an environment variable of this
process only: nothing is written to disk, and every value is redacted from events and the result.

Any failure (missing secret or version, permission denied, disabled version, no credentials,
Secret Manager unreachable within the deadline) is a configuration error: exit code 2, never retried
by the Job, with a message that names the secret resource and the variable (never a value).

`AGENTRY_SECRET_MANAGER_ENDPOINT` (host:port) points the real client at a local gRPC server without
TLS or credentials: tests and local fakes only. The Google client library is imported only when
there are references, so the runtime works without it otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping

from agentry_common.models import SecretSpec

from .config import ConfigError
from .redaction import MIN_LENGTH

ENV_REFS = "AGENTRY_SECRET_MANAGER_REFS"
ENV_ENDPOINT = "AGENTRY_SECRET_MANAGER_ENDPOINT"
ENV_TIMEOUT = "AGENTRY_SECRET_MANAGER_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 30.0
# Values this short would redact ordinary words from every event; they are still never logged.
MIN_REDACTED_LENGTH = MIN_LENGTH

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_RESOURCE = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$")

# (resource name, timeout seconds) -> the secret's bytes; raises the client library's exceptions.
Accessor = Callable[[str, float], bytes]


def parse_refs(env: Mapping[str, str]) -> dict[str, str]:
    """{env name: full version name} from AGENTRY_SECRET_MANAGER_REFS ("latest" when no version)."""
    raw = env.get(ENV_REFS, "").strip()
    if not raw:
        return {}
    try:
        refs = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{ENV_REFS} is not valid JSON ({err})") from None
    if not isinstance(refs, dict):
        raise ConfigError(f'{ENV_REFS} must be a JSON object {{"ENV": "projects/P/secrets/S/versions/V"}}')
    result: dict[str, str] = {}
    for name, ref in refs.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ConfigError(f"{ENV_REFS}: {name!r} is not a valid environment variable name")
        if not isinstance(ref, str) or not _RESOURCE.match(ref):
            raise ConfigError(f"{ENV_REFS}: {name} must name projects/P/secrets/S[/versions/V], got {ref!r}")
        result[name] = ref if "/versions/" in ref else f"{ref}/versions/latest"
    return result


def _timeout(env: Mapping[str, str]) -> float:
    raw = env.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_TIMEOUT} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{ENV_TIMEOUT} must be positive, got {raw!r}")
    return value


def client_accessor(env: Mapping[str, str]) -> Accessor:
    """AccessSecretVersion through the real client (default credentials, or the test endpoint)."""
    try:
        from google.cloud import secretmanager_v1
    except ImportError:
        raise ConfigError(
            f"{ENV_REFS} is set but google-cloud-secret-manager is not installed in this image"
        ) from None
    endpoint = env.get(ENV_ENDPOINT, "").strip()
    if endpoint:
        import grpc  # type: ignore[import-untyped]
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        transport = SecretManagerServiceGrpcTransport(
            channel=grpc.insecure_channel(endpoint),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        client = secretmanager_v1.SecretManagerServiceClient(transport=transport)
    else:
        client = secretmanager_v1.SecretManagerServiceClient()  # Workload Identity on GKE

    from google.api_core import retry as retries

    def access(name: str, timeout: float) -> bytes:
        # Transient errors are retried with backoff, but only until the deadline: never forever.
        retry = retries.Retry(predicate=retries.if_transient_error, initial=0.2, maximum=5.0, timeout=timeout)
        response = client.access_secret_version(name=name, retry=retry, timeout=timeout)
        return bytes(response.payload.data)

    return access


def _explain(env_name: str, resource: str, exc: Exception) -> str:
    """A message naming the variable and the secret resource, and what to do; never the value."""
    where = f"secret {resource} (for {env_name})"
    try:
        from google.api_core import exceptions as gexc
    except ImportError:
        return f"{where} could not be read: {type(exc).__name__}: {exc}"
    if isinstance(exc, gexc.NotFound):
        return f"{where} does not exist: create it or fix spec.secrets[].secretManager"
    if isinstance(exc, gexc.PermissionDenied):
        return (
            f"{where}: permission denied ({exc.message}); grant roles/secretmanager.secretAccessor "
            "on this secret to the agent runs' Google service account"
        )
    if isinstance(exc, gexc.FailedPrecondition):
        return f"{where} cannot be read: {exc.message} (enable the version or reference another)"
    if isinstance(exc, gexc.Unauthenticated):
        return f"{where}: not authenticated to Secret Manager ({exc.message})"
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"{where} could not be read: {type(exc).__name__}: {exc.message}"
    if isinstance(exc, gexc.RetryError | TimeoutError):
        return f"{where} could not be read: Secret Manager did not answer in time"
    return f"{where} could not be read: {type(exc).__name__}: {exc}"


def _decode(env_name: str, resource: str, data: bytes) -> str:
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"secret {resource} (for {env_name}) is not UTF-8 text") from None
    if "\x00" in value:
        raise ConfigError(f"secret {resource} (for {env_name}) contains a NUL byte")
    # `echo key | gcloud secrets create --data-file=-` stores a trailing newline: drop one.
    return value.removesuffix("\n").removesuffix("\r")


def resolve(env: Mapping[str, str], accessor: Accessor | None = None) -> dict[str, str]:
    """{env name: value} for every reference in AGENTRY_SECRET_MANAGER_REFS ({} when unset)."""
    refs = parse_refs(env)
    if not refs:
        return {}
    timeout = _timeout(env)
    if accessor is None:
        try:
            accessor = client_accessor(env)
        except ConfigError:
            raise
        except Exception as exc:  # e.g. google.auth DefaultCredentialsError
            raise ConfigError(
                f"cannot create a Secret Manager client for {', '.join(sorted(refs.values()))}: "
                f"{type(exc).__name__}: {exc} (on GKE: Workload Identity for the runs' ServiceAccount)"
            ) from None
    values: dict[str, str] = {}
    for env_name, resource in sorted(refs.items()):
        try:
            data = accessor(resource, timeout)
        except Exception as exc:
            raise ConfigError(_explain(env_name, resource, exc)) from None
        values[env_name] = _decode(env_name, resource, data)
    return values


def redactable(values: Mapping[str, str]) -> list[str]:
    """The resolved values the event sink must redact."""
    return [v for v in values.values() if len(v.strip()) >= MIN_REDACTED_LENGTH]


def agent_secret_values(specs: Iterable[SecretSpec], env: Mapping[str, str]) -> list[str]:
    """The values of the Agent's spec.secrets in this run's environment, to redact like provider keys."""
    return redactable({s.env: env.get(s.env, "") for s in specs})
