"""Secret Manager references in the runtime, without a server: parsing, errors, decoding, redaction."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.api_core import exceptions as gexc

from agentry_workspace import secrets
from agentry_workspace.app import pod_main
from agentry_workspace.config import ConfigError

pytestmark = pytest.mark.unit

REF = "projects/p/secrets/llm/versions/3"


def refs(**items: str) -> dict[str, str]:
    return {secrets.ENV_REFS: json.dumps(items)}


def test_no_refs_means_no_client_and_nothing_to_do() -> None:
    def boom(name: str, timeout: float) -> bytes:
        raise AssertionError("no call expected")

    assert secrets.resolve({}, boom) == {}
    assert secrets.resolve({secrets.ENV_REFS: " "}, boom) == {}


def test_versionless_reference_means_latest() -> None:
    assert secrets.parse_refs(refs(KEY="projects/p/secrets/s")) == {
        "KEY": "projects/p/secrets/s/versions/latest"
    }


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('["projects/p/secrets/s"]', "must be a JSON object"),
        ('{"lower": "projects/p/secrets/s"}', "'lower' is not a valid environment variable name"),
        ('{"KEY": "secrets/s"}', "KEY must name projects/P/secrets/S"),
        ('{"KEY": 3}', "KEY must name"),
    ],
)
def test_malformed_refs_are_config_errors(raw: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        secrets.parse_refs({secrets.ENV_REFS: raw})
    assert needle in str(err.value)


def test_values_are_decoded_with_one_trailing_newline_dropped() -> None:
    seen: list[tuple[str, float]] = []

    def access(name: str, timeout: float) -> bytes:
        seen.append((name, timeout))
        return {"projects/p/secrets/a/versions/latest": b"alpha-value\n", REF: "bêta\n\n".encode()}[name]

    env = {**refs(A="projects/p/secrets/a", B=REF), secrets.ENV_TIMEOUT: "5"}
    assert secrets.resolve(env, access) == {"A": "alpha-value", "B": "bêta\n"}
    assert {t for _, t in seen} == {5.0}


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (gexc.NotFound("Secret [projects/p/secrets/llm] not found or has no versions."), "does not exist"),
        (gexc.PermissionDenied("denied"), "roles/secretmanager.secretAccessor"),
        (gexc.FailedPrecondition("Secret Version is in DISABLED state."), "DISABLED"),
        (gexc.ServiceUnavailable("connection refused"), "ServiceUnavailable"),
        (gexc.RetryError("deadline", cause=None), "did not answer in time"),
    ],
)
def test_every_failure_names_the_secret_and_the_variable(exc: Exception, needle: str) -> None:
    def access(name: str, timeout: float) -> bytes:
        raise exc

    with pytest.raises(ConfigError) as err:
        secrets.resolve(refs(ANTHROPIC_API_KEY=REF), access)
    message = str(err.value)
    assert REF in message and "ANTHROPIC_API_KEY" in message and needle in message


@pytest.mark.parametrize(("data", "needle"), [(b"\xff\xfe", "not UTF-8"), (b"a\x00b", "NUL")])
def test_unusable_bytes_are_refused(data: bytes, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        secrets.resolve(refs(KEY=REF), lambda name, timeout: data)


def test_bad_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=secrets.ENV_TIMEOUT):
        secrets.resolve({**refs(KEY=REF), secrets.ENV_TIMEOUT: "soon"}, lambda n, t: b"x")


def test_redactable_skips_only_tiny_values() -> None:
    assert secrets.redactable({"A": "long-enough", "B": "abc"}) == ["long-enough"]


class SleptForAnHour(BaseException):
    """Not an Exception: nothing in the runtime may catch it and turn it into a config error."""


class FakeClock:
    """time.monotonic/time.sleep for the client library's retry loop: sleeping only moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.now > 3600:  # a retry loop without a deadline would go on for ever
            raise SleptForAnHour(f"still retrying after {len(self.sleeps)} attempts")


def test_unreachable_secret_manager_is_a_config_error_within_the_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens at this endpoint: every attempt is UNAVAILABLE (transient, so retried). The retry
    # loop's clock is fake, so the oracle is what it did, not how long it took: it backed off and
    # retried, gave up once the next wait would pass the deadline (it never slept past it), and
    # exit 2 names the secret and says it did not answer in time.
    from google.api_core.retry import retry_base, retry_unary

    clock = FakeClock()
    fake_time = SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep)
    monkeypatch.setattr(retry_unary, "time", fake_time)
    monkeypatch.setattr(retry_base, "time", fake_time)
    env = {
        **refs(ANTHROPIC_API_KEY=REF),
        secrets.ENV_ENDPOINT: "127.0.0.1:9",
        secrets.ENV_TIMEOUT: "5",
        "AGENTRY_RESULT_FILE": str(tmp_path / "result"),
        "AGENTRY_CONFIG_DIR": str(tmp_path / "missing"),
    }
    assert pod_main(env) == 2
    assert len(clock.sleeps) >= 2, clock.sleeps  # retried with backoff, more than once
    assert 0 < clock.now <= 5, clock.sleeps  # ... and never waited past the 5 s deadline
    result = json.loads((tmp_path / "result").read_text())
    assert result["stopReason"] == "config_error" and REF in result["summary"]
    assert "did not answer in time" in result["summary"]
    assert REF in capsys.readouterr().err
