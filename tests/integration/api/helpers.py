"""Small helpers shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from agentry_common.resources import Execution
from tests.fixtures.helpers import eventually, patient

AGENT = {
    "name": "News digest",
    "spec": {
        "instructions": "Summarise the news.",
        "model": {"name": "claude-sonnet-4-5"},
        "tools": ["files"],
    },
}

REPORT = {
    "stopReason": "end_turn",
    "summary": "All quiet.",
    "usage": {"inputTokens": 1200, "outputTokens": 300, "costUSD": "0.0081", "model": "claude-sonnet-4-5"},
}


def create_agent(client: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = {**AGENT, **overrides}
    r = client.post("/api/agents", json=body)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def run(client: httpx.Client, agent_id: str, text: str | None = None) -> dict[str, Any]:
    r = client.post(f"/api/agents/{agent_id}/runs", json={"input": text} if text else None)
    assert r.status_code == 202, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_api_phase(client: httpx.Client, execution: str, phase: str, timeout: float = 40) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/executions/{execution}").json()
        return body if body.get("phase") == phase else None

    result: dict[str, Any] = eventually(check, timeout, f"execution {execution} to be {phase} in the API")
    return result


def pod_of(kube_client: Client, namespace: str, execution: str, timeout: float = 40) -> Pod:
    def find() -> Pod | None:
        ex = kube_client.get(Execution, execution, namespace=namespace)
        job = (ex.status or {}).get("jobName")
        if not job:
            return None
        pods = list(kube_client.list(Pod, namespace=namespace, labels={"batch.kubernetes.io/job-name": job}))
        return pods[-1] if pods else None

    pod: Pod = eventually(find, timeout, f"the pod of {execution}")
    return pod


class SseReader:
    """Reads an SSE stream in a thread; events (and comments) go to a queue the test reads with a
    deadline, so a missing event fails the test instead of hanging it."""

    def __init__(self, client: httpx.Client, last_event_id: str | None = None) -> None:
        import queue
        import threading

        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cm = client.stream("GET", "/api/events", headers=headers, timeout=httpx.Timeout(30, read=60))
        self.response = self._cm.__enter__()
        self.status = self.response.status_code
        self.comments = 0
        self.done = threading.Event()  # set when the server ended the stream (or it broke)
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self._thread.start()

    def _read(self) -> None:
        event: dict[str, Any] = {}
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if "data" in event:
                        self.queue.put(event)
                    event = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    event[field] = (
                        event.get(field, "") + ("\n" if field == "data" and field in event else "") + value
                    )
        except Exception:
            pass
        finally:
            self.done.set()

    def next(self, timeout: float = 20) -> dict[str, Any]:
        import json
        import queue

        try:
            raw = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SSE event within {timeout} s") from None
        return {"event": raw.get("event", "message"), "id": raw.get("id"), "data": json.loads(raw["data"])}

    def until(self, predicate: Any, timeout: float = 40) -> list[dict[str, Any]]:
        """Events up to and including the first that satisfies predicate."""
        import time

        seen = []
        deadline = time.monotonic() + patient(timeout)
        while True:
            event = self.next(max(0.1, deadline - time.monotonic()))
            seen.append(event)
            if predicate(event):
                return seen

    def close(self) -> None:
        self.response.close()
        self._cm.__exit__(None, None, None)


def request_approval(
    kube_client: Client, namespace: str, execution: str, approval_id: str, expires_in: int = 600
) -> None:
    """Play the runtime stopping before a RED action: exit code 30 with the approval in its report."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    pod = pod_of(kube_client, namespace, execution)
    from tests.fixtures.helpers import play_kubelet

    play_kubelet(kube_client, pod, "Running")
    play_kubelet(
        kube_client,
        pod,
        "Failed",
        30,
        {
            "stopReason": "approval_required",
            "summary": "",
            "approval": {
                "id": approval_id,
                "tool": "shell",
                "summary": "rm -rf /workspace/cache",
                "risk": "RED",
                "requestedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "expiresAt": (now + dt.timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "usage": {
                "inputTokens": 10,
                "outputTokens": 5,
                "costUSD": "0.0001",
                "model": "claude-sonnet-4-5",
            },
        },
    )
