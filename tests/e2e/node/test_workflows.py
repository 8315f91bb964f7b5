"""The morning brief (manifests/samples/workflow-morning-brief.yaml) on the local node: three readers
really running at once in pods, their results passed to the summariser, the poster's RED POST waiting
for a human who approves it in the API, the resumed pod posting, and every step's tokens and cost in
the run's status, the API and the dashboard (screenshot docs/screenshots/workflow-run-node.png)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, expect

from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM
from tests.e2e.api.test_budget_pages import save
from tests.e2e.api.test_dashboard import browser
from tests.fixtures.helpers import patient

from .sandbox_sites import Site
from .stack import NodeStack, api_get

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"
READS = {  # step -> (text of its source in the input, what the reader reports)
    "hacker-news": ("hnrss.org", "HN: two new fabs announced in Pyeongtaek."),
    "korea-herald": ("koreaherald.com", "Herald: DRAM contract prices up 8 percent."),
    "bbc": ("feeds.bbci.co.uk", "BBC: EU chips act funds a Korean joint venture."),
}
BRIEF = "Morning brief: fabs in Pyeongtaek, DRAM up 8 percent, EU funds a joint venture."
READ_SECONDS = 8.0  # each reader's answer takes this long: their pods must overlap in time


@pytest.fixture
def hook(node_stack: NodeStack) -> Iterator[Site]:
    """The team chat's incoming webhook, on the node's address (the only host the poster may call)."""
    site = Site("hook").start()
    try:
        yield site
    finally:
        site.stop()


def sample(hook: Site) -> str:
    """The sample as committed, with the poster's allowed host pointed at the local webhook."""
    docs = list(yaml.safe_load_all((SAMPLES / "workflow-morning-brief.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "Agent" and doc["metadata"]["name"] == "poster":
            doc["spec"]["http"]["allowedHosts"] = [hook.origin]
    return yaml.safe_dump_all(docs)


def script(llm: ScriptedLLM, hook: Site) -> None:
    usage = {"input_tokens": 900, "output_tokens": 60}
    post = {"url": f"{hook.origin}/hook", "method": "POST", "body": BRIEF}
    llm.script(
        [
            *(
                {"match": src, "text": text, "delay": READ_SECONDS, "usage": usage}
                for src, text in READS.values()
            ),
            {
                "match": "Brief for semiconductors",
                "text": BRIEF,
                "usage": {"input_tokens": 1500, "output_tokens": 90},
            },
            {
                "match": BRIEF,
                "tool_use": {"name": "http", "input": post},
                "usage": {"input_tokens": 700, "output_tokens": 40},
            },
            {
                "match": BRIEF,
                "text": "Posted the brief.",
                "usage": {"input_tokens": 800, "output_tokens": 10},
            },
        ]
    )


def wait_for(what: str, check: Any, timeout: float = 240) -> Any:
    deadline = time.monotonic() + patient(timeout)
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"{what}: not after {timeout:.0f} s")


def steps_of(stack: NodeStack, run: str) -> dict[str, dict[str, Any]]:
    """The run's step Executions by step name (one attempt each here)."""
    items = stack.items("executions", "-l", f"agentry.dev/workflow-run={run}")
    return {ex["metadata"]["labels"]["agentry.dev/workflow-step"]: ex for ex in items}


def pod_times(stack: NodeStack, execution: str) -> tuple[dt.datetime, dt.datetime]:
    """When the run's container started and ended (the kubelet's record)."""
    [pod] = stack.items("pods", "-l", f"agentry.dev/execution={execution}")
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    parse = dt.datetime.fromisoformat
    return parse(state["startedAt"].replace("Z", "+00:00")), parse(state["finishedAt"].replace("Z", "+00:00"))


def approve(stack: NodeStack, execution: str) -> str:
    """Approve the poster's pending action as its owner would, through the API."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}

    def pending() -> str | None:
        items = api_get(stack, "/api/approvals?state=pending").json().get("items") or []
        return next((a["id"] for a in items if a["execution"] == execution), None)

    approval: str = wait_for("the poster's approval in the API", pending, 120)
    r = localhttp.post(
        f"{stack.api_url}/api/approvals/{approval}/decision",
        json={"approved": True},
        headers=headers,
        timeout=10,
    )
    assert r.status_code == 202, r.text
    return approval


def test_the_morning_brief_runs_in_pods_and_posts_after_approval(
    node_stack: NodeStack, llm: ScriptedLLM, hook: Site, browser: Browser
) -> None:
    script(llm, hook)
    node_stack.apply(sample(hook))
    run = (
        node_stack.kubectl("create", "-f", str(SAMPLES / "workflowrun.yaml"), "-o", "name")
        .strip()
        .split("/")[-1]
    )

    def poster_waits() -> dict[str, Any] | None:
        post = steps_of(node_stack, run).get("post")
        return post if post and (post.get("status") or {}).get("phase") == "WaitingApproval" else None

    post = wait_for("the post step waiting for approval", poster_waits, 300)
    assert post["status"]["approval"]["tool"] == "http" and post["status"]["approval"]["risk"] == "RED"
    assert hook.seen == []  # nothing posted before a human said yes
    steps = steps_of(node_stack, run)
    # The three readers ran at the same time, each in its own pod on the node.
    times = [pod_times(node_stack, steps[s]["metadata"]["name"]) for s in READS]
    assert max(start for start, _ in times) < min(end for _, end in times), times
    # Each reader's result reached the summariser's input, and the summary the poster's.
    summarise = steps["summarise"]["spec"]["input"]
    assert all(f"(Succeeded): {text}" in summarise for _, text in READS.values()), summarise
    assert f"Brief for semiconductors in Korea ({run})" in summarise
    assert post["spec"]["input"] == BRIEF

    approve(node_stack, post["metadata"]["name"])

    def ended() -> dict[str, Any] | None:
        wfr = node_stack.get("workflowrun", run)
        return wfr if (wfr.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    wfr = wait_for("the run to end", ended, 300)
    status = wfr["status"]
    assert status["phase"] == "Succeeded", json.dumps(status)
    assert [(s.method, s.path, s.body) for s in hook.seen] == [("POST", "/hook", BRIEF)]
    # Every step's tokens and cost are those of its Execution; the totals add them up.
    executions = steps_of(node_stack, run)
    for step in status["steps"]:
        usage = executions[step["name"]]["status"]["usage"]
        assert step["tokens"] == usage["totalTokens"] > 0, step
        assert Decimal(step["costUSD"]) == Decimal(usage["costUSD"]) > 0, step
    assert status["totals"]["tokens"] == sum(s["tokens"] for s in status["steps"])
    assert Decimal(status["totals"]["costUSD"]) == sum(Decimal(s["costUSD"]) for s in status["steps"])
    assert executions["post"]["status"]["phase"] == "Succeeded"

    # The API shows the same run and the Workflow's next fire times (weekdays 07:30 Seoul = 22:30 UTC).
    shown = api_get(node_stack, f"/api/workflow-runs/{run}").json()
    assert shown["phase"] == "Succeeded" and shown["totals"] == status["totals"], shown
    upcoming = api_get(node_stack, "/api/workflows/morning-brief").json()["status"]["upcomingRuns"]
    assert upcoming and all("T22:30:00" in t for t in upcoming), upcoming

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    signed = page.request.post(
        f"{node_stack.api_url}/api/session/token", data={"token": node_stack.admin_token}
    )
    assert signed.ok, signed.text()  # the browser's cookie: signed in as the owner of kubectl's objects
    page.goto(f"{node_stack.api_url}/workflow-runs/{run}")
    expect(page.locator("#run-phase")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#run-graph g.node.phase-Succeeded")).to_have_count(5)
    expect(page.locator('#run-steps tr[data-step="post"]')).to_contain_text("$")
    save(page, "workflow-run-node.png")
