"""`python -m agentry_workspace` as a real process resolving Secret Manager references at start.

The real Secret Manager client talks to the local gRPC fake (AGENTRY_SECRET_MANAGER_ENDPOINT).
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.cloud import secretmanager_v1

from agentry_testing.gcp_fakes import SECRET_SERVICE, GcpFakes
from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.workspace.harness import PodRun, base_spec, prepare, run_pod

pytestmark = pytest.mark.integration

PROVIDER_KEY = "sk-ant-from-secret-manager-0123456789"


def pod_env(
    tmp_path: Path, gcp: GcpFakes, llm_url: str, refs: dict[str, str], **extra: str
) -> dict[str, str]:
    env = prepare(
        tmp_path,
        base_spec(),
        llm_url=llm_url,
        env={
            "AGENTRY_SECRET_MANAGER_REFS": json.dumps(refs),
            "AGENTRY_SECRET_MANAGER_ENDPOINT": gcp.address,
            "AGENTRY_SECRET_MANAGER_TIMEOUT_SECONDS": "3",
            **extra,
        },
    )
    del env["ANTHROPIC_API_KEY"]  # only Secret Manager provides it
    return env


def test_provider_key_and_tool_secret_come_from_secret_manager(tmp_path: Path, gcp: GcpFakes) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    key_version = gcp.secrets.add("projects/p/secrets/anthropic", PROVIDER_KEY + "\n")
    gcp.secrets.add("projects/p/secrets/canary", "old-value")
    gcp.secrets.add("projects/p/secrets/canary", canary)
    with ScriptedLLM() as llm:
        llm.script(
            [
                {"tool_use": {"name": "shell", "input": {"command": 'echo "token=$CANARY_TOKEN"'}}},
                {"text": f"The token is {canary}."},  # a model that repeats what it saw
            ]
        )
        env = pod_env(
            tmp_path,
            gcp,
            llm.url,
            {"ANTHROPIC_API_KEY": key_version, "CANARY_TOKEN": "projects/p/secrets/canary"},  # latest
        )
        run = run_pod(tmp_path, env)
        requests = llm.requests

    assert run.code == 0, run.explain()
    # The provider got the key from Secret Manager (one trailing newline dropped), the tool the canary.
    headers = requests[0].headers  # x-api-key or a bearer token, depending on the SDK version
    assert (headers.get("x-api-key") or headers.get("authorization", "")).endswith(PROVIDER_KEY)
    tool_result = requests[1].body["messages"][-1]["content"][0]["content"]
    assert f"token={canary}" in tool_result
    # ... and neither appears in events, stderr or the result (termination message).
    for text in (run.stdout, run.stderr, run.result_text):
        assert canary not in text and PROVIDER_KEY not in text
    assert run.result["summary"] == "The token is [REDACTED]."
    assert {r.request.name for r in gcp.secrets.requests} == {
        key_version,
        "projects/p/secrets/canary/versions/latest",
    }


def assert_config_error(run: PodRun, *needles: str) -> str:
    assert run.code == 2, run.explain()
    summary = str(run.result["summary"])
    assert run.result["stopReason"] == "config_error"
    for needle in needles:
        assert needle in summary and needle in run.stderr
    errors = run.of("error")
    assert errors and errors[0]["stopReason"] == "config_error" and needles[0] in errors[0]["message"]
    return summary


def test_missing_secret_is_a_config_error_naming_it(tmp_path: Path, gcp: GcpFakes) -> None:
    missing = "projects/p/secrets/nope/versions/latest"
    with ScriptedLLM() as llm:  # never called: the run stops before any model call
        run = run_pod(tmp_path, pod_env(tmp_path, gcp, llm.url, {"ANTHROPIC_API_KEY": missing}))
        assert llm.requests == []
    summary = assert_config_error(run, missing, "ANTHROPIC_API_KEY")
    assert "does not exist" in summary
    assert len(gcp.secrets.calls("AccessSecretVersion")) == 1  # a final answer: not retried


def test_permission_denied_says_which_role_is_missing(tmp_path: Path, gcp: GcpFakes) -> None:
    version = gcp.secrets.add("projects/p/secrets/locked", "x" * 20)
    gcp.secrets.deny("projects/p/secrets/locked")
    with ScriptedLLM() as llm:
        run = run_pod(tmp_path, pod_env(tmp_path, gcp, llm.url, {"ANTHROPIC_API_KEY": version}))
    summary = assert_config_error(run, version)
    assert "permission denied" in summary and "roles/secretmanager.secretAccessor" in summary


def test_disabled_version_is_a_config_error(tmp_path: Path, gcp: GcpFakes) -> None:
    version = gcp.secrets.add("projects/p/secrets/rotated", "x" * 20)
    gcp.secrets.disable(version)
    with ScriptedLLM() as llm:
        run = run_pod(tmp_path, pod_env(tmp_path, gcp, llm.url, {"ANTHROPIC_API_KEY": version}))
    assert "DISABLED" in assert_config_error(run, version)


class StuckSecretManager:
    """A Secret Manager that never gives a secret: every AccessSecretVersion is refused as
    UNAVAILABLE ("refuses": what an unreachable service looks like to the client) or held for ten
    hours ("hangs"). It records each call's deadline as the client sent it and whether the client
    cancelled the call, so the test asserts on what happened, not on how long it took."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.lock = threading.Lock()
        self.deadlines: list[float | None] = []  # seconds left when the call arrived
        self.ended_by_client: list[threading.Event] = []
        self.release = threading.Event()  # lets a held call go when the test ends
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._access,
            request_deserializer=secretmanager_v1.AccessSecretVersionRequest.deserialize,
            response_serializer=secretmanager_v1.AccessSecretVersionResponse.serialize,
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SECRET_SERVICE, {"AccessSecretVersion": handler}),)
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def _access(self, request: Any, context: grpc.ServicerContext) -> Any:
        ended = threading.Event()
        context.add_callback(ended.set)  # runs when the RPC terminates, e.g. cancelled by its deadline
        with self.lock:
            self.deadlines.append(context.time_remaining())
            self.ended_by_client.append(ended)
        if self.mode == "refuses":
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection refused")
        self.release.wait(36000)  # ten hours, unless the client gives up first
        context.abort(grpc.StatusCode.INTERNAL, "the client waited ten hours")

    def __enter__(self) -> StuckSecretManager:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.stop(grace=None).wait(5)


@pytest.mark.parametrize("mode", ["refuses", "hangs"])
def test_unreachable_secret_manager_gives_up_at_the_deadline(
    tmp_path: Path, gcp: GcpFakes, mode: str
) -> None:
    version = "projects/p/secrets/any/versions/1"
    with ScriptedLLM() as llm, StuckSecretManager(mode) as stuck:
        env = pod_env(tmp_path, gcp, llm.url, {"ANTHROPIC_API_KEY": version})  # timeout 3 s
        env["AGENTRY_SECRET_MANAGER_ENDPOINT"] = stuck.address
        run = run_pod(tmp_path, env)  # no secret ever comes: only the deadline can end this
        assert llm.requests == []
        with stuck.lock:
            deadlines, ended = list(stuck.deadlines), list(stuck.ended_by_client)
        # Before the stuck service lets anything go: every call it got had already been ended by
        # the client (in "hangs", cancelled while the handler was still holding it).
        assert ended and all(e.wait(10) for e in ended)
    summary = assert_config_error(run, version, "ANTHROPIC_API_KEY")
    assert gcp.secrets.requests == []  # every call went to the stuck service
    # Every attempt carried a deadline of at most the configured 3 s (the client sends what is left
    # of it, or the whole of it again when less than 1 s is left; + the header's rounding), so no
    # single call can wait for ever.
    assert all(d is not None and 0 < d <= 3.1 for d in deadlines), deadlines
    if mode == "refuses":
        # Transient refusals were retried with backoff until the retry deadline ran out.
        assert len(deadlines) >= 2, deadlines
        assert "did not answer in time" in summary
    else:
        # The one call would have been held for ten hours: the client cancelled it at its deadline
        # and did not ask again (a deadline is not a transient error).
        assert len(deadlines) == 1, deadlines
        assert "DeadlineExceeded" in summary
