"""`agentry runs reply` and the thread of `runs get`: the pure parts and the API calls (a mock transport).

End to end against the real API and cluster: tests/integration/cli/test_reply.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from agentry_cli import config
from agentry_cli.client import Api
from agentry_cli.cluster import execution_manifest, follow_up_refusal, thread_rows
from agentry_cli.main import main
from agentry_cli.session import Session

pytestmark = pytest.mark.unit


def ex(
    name: str, parent: str | None, created: str, phase: str = "Succeeded", **status: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"agentRef": {"name": "a"}}
    if parent:
        spec["parentRef"] = {"name": parent}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": spec,
        "status": {"phase": phase, **status},
    }


def test_a_follow_up_manifest_names_its_parent() -> None:
    made = execution_manifest("hello", "and Friday?", parent="hello-x1")
    assert made["spec"]["parentRef"] == {"name": "hello-x1"} and made["spec"]["input"] == "and Friday?"
    assert made["spec"]["trigger"] == "Manual" and made["spec"]["agentRef"] == {"name": "hello"}
    assert "parentRef" not in execution_manifest("hello", "hi")["spec"]


def test_cluster_mode_refuses_early_what_the_operator_would() -> None:
    assert "still Running" in str(follow_up_refusal(ex("r", None, "1", "Running")))
    assert "no checkpoint journal" in str(follow_up_refusal(ex("r", None, "1")))
    assert follow_up_refusal(ex("r", None, "1", checkpoint={"entries": 3})) is None


def test_the_thread_from_crs_has_ancestors_the_run_and_its_continuations() -> None:
    usage = {"inputTokens": 10, "outputTokens": 2, "costUSD": "0.01"}
    crs = [
        ex("c", "b", "3"),
        ex("a", None, "1", usage=usage),
        ex("b", "a", "2"),
        ex("d", "c", "4"),
        ex("b2", "a", "5"),
        ex("other", None, "0"),
    ]
    rows = thread_rows(crs, "b")
    assert [(r["name"], r["relation"]) for r in rows] == [
        ("a", "ancestor"),
        ("b", "self"),
        ("c", "continuation"),
        ("d", "continuation"),
    ]
    assert (rows[0]["tokens"], rows[0]["costUSD"]) == (12, "0.01") and rows[1]["costUSD"] == "0"
    assert thread_rows(crs, "missing") == []
    assert [r["relation"] for r in thread_rows(crs, "other")] == ["self"]


def answering(seen: list[httpx.Request], status: int, body: dict[str, Any]) -> Any:
    def make(self: Session) -> Api:
        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(status, json=body)

        if self._api is None:
            self._api = Api(config.Target("http://api.test", "t"), transport=httpx.MockTransport(handle))
        return self._api

    return make


def test_reply_posts_the_message_and_prints_the_new_runs_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[httpx.Request] = []
    monkeypatch.setattr(
        Session, "api", answering(seen, 201, {"id": "r-2", "parent": "r/1", "phase": "Pending"})
    )
    assert main(["runs", "reply", "r/1", "and Friday?"]) == 0
    assert capsys.readouterr().out.strip() == "r-2"
    assert seen[0].method == "POST" and seen[0].url.raw_path == b"/api/executions/r%2F1/messages"
    assert json.loads(seen[0].content) == {"message": "and Friday?"}
    assert main(["runs", "reply", "r/1", "and Friday?", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["parent"] == "r/1"


def test_a_refused_reply_exits_5_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[httpx.Request] = []
    why = {
        "reason": "Conflict",
        "detail": "run 'r' is still Running: steering a live run is not available yet",
    }
    monkeypatch.setattr(Session, "api", answering(seen, 409, why))
    assert main(["runs", "reply", "r", "stop"]) == 5
    assert "error: Conflict 409: run 'r' is still Running" in capsys.readouterr().err
    assert main(["runs", "reply", "r", " "]) == 2 and len(seen) == 1  # an empty message is never sent


def test_get_shows_the_thread_after_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    view = {
        "id": "b",
        "phase": "Succeeded",
        "parent": "a",
        "thread": [
            {
                "name": "a",
                "relation": "ancestor",
                "phase": "Succeeded",
                "tokens": 12,
                "costUSD": "0.01",
                "createdAt": "1",
            },
            {
                "name": "b",
                "relation": "self",
                "phase": "Succeeded",
                "tokens": 5,
                "costUSD": "0.02",
                "createdAt": "2",
            },
        ],
    }
    monkeypatch.setattr(Session, "api", answering([], 200, view))
    assert main(["runs", "get", "b"]) == 0
    out = capsys.readouterr().out
    assert "THREAD" in out and "0.01" in out and "0.02" in out and '"relation"' not in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["ancestor"], ["self"])]
    assert rows == [
        ["ancestor", "a", "Succeeded", "12", "0.01", "1"],
        ["self", "b", "Succeeded", "5", "0.02", "2"],
    ]
