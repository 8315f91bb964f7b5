"""The budgets and usage pages in headless Chromium: a run throttled and refused by a real LLM gateway
shows up on /budgets with its zone badge and the explanation; the spend and usage charts (the vendored
Chart.js, under the pages' CSP) are drawn with the API's numbers; an admin creates a policy and
throttles a user from the page's forms, the gateway obeys, and that user sees why (no controls for
them). Screenshots go to docs/screenshots/."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from agentry_api.auth import owner_label
from agentry_api.storage.store import Store, new_client
from agentry_localcluster.kube import ControlPlane
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient
from tests.integration.api.budget_steering import admit_throttle_refuse, call, governed
from tests.integration.api.server import ApiServer
from tests.integration.gateway.harness import ANTHROPIC_KEY, GatewayServer

from .test_dashboard import ARTIFACTS, browser

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
RUN, AGENT = "report-writer-7f2k", "report-writer"


@pytest.fixture
def governed_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ApiServer, GatewayServer, ScriptedLLM]]:
    monkeypatch.setenv("GW_TEST_ANTHROPIC", ANTHROPIC_KEY)
    monkeypatch.setenv("GW_TEST_OPENAI", ANTHROPIC_KEY)
    with ScriptedLLM() as llm, governed(firestore_project, namespace, str(kube.kubeconfig), llm) as (api, gw):
        yield api, gw, llm


def runs_of(user_id: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Finished runs as the API's watcher mirrors them (usage from the runtime), over four days."""
    rows = [(0, AGENT, "claude-haiku-4-5", "0.42"), (1, AGENT, "claude-sonnet-4-6", "1.10")]
    rows += [(2, "triage", "gpt-4.1-mini", "0.30"), (3, "triage", "claude-sonnet-4-6", "0.75")]
    return [
        {
            "id": f"run-{i}",
            "userId": user_id,
            "agentId": agent,
            "phase": "Succeeded",
            "createdAt": (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "usage": {"inputTokens": 1000 * (i + 1), "outputTokens": 200, "costUSD": cost, "model": model}
            | (CACHED if i == 1 else {}),
        }
        for i, (days, agent, model, cost) in enumerate(rows)
    ]


# One run with prompt caching (1.60 without it, so 0.50 saved); the others never reported it.
CACHED = {"cacheReadTokens": 1500, "cacheWriteTokens": 200, "uncachedCostUSD": "1.60"}


def seed_runs(project: str, docs: list[dict[str, Any]]) -> None:
    async def write() -> None:
        store = Store(new_client(project))
        for doc in docs:
            await store.put_execution(doc)

    # Playwright's sync API runs an event loop in this thread: the store's client gets its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, write()).result()


def drawn(page: Page, selector: str) -> dict[str, Any]:
    """The chart Chart.js made of a canvas, and whether any pixel of it is painted."""
    result: dict[str, Any] = page.locator(selector).evaluate(
        """c => ({chart: !!Chart.getChart(c),
                  painted: c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v !== 0),
                  data: Chart.getChart(c).data.datasets[0].data,
                  axis: Chart.getChart(c).getDatasetMeta(0).yScale?.id})"""
    )
    return result


def save(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    shutil.copy(SHOTS / name, ARTIFACTS / f"dashboard-{name}")


def test_budgets_and_usage_pages_show_a_throttled_run_and_draw_charts(
    browser: Browser, governed_api: tuple[ApiServer, GatewayServer, ScriptedLLM], namespace: str
) -> None:
    api, gw, llm = governed_api
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(api.url + "/budgets")  # a new guest session in the browser's cookie
    user_id = page.request.get(api.url + "/api/me").json()["id"]
    llm.script([{"text": "ok"}, {"text": "cheaper"}])
    admit_throttle_refuse(gw, owner_label(user_id), namespace, RUN, AGENT)
    seed_runs(api.settings.google_cloud_project, runs_of(user_id, dt.datetime.now(dt.UTC)))

    page.goto(api.url + "/budgets")
    limit = page.locator('#budget-limits tr[data-policy="users"]')
    expect(limit.locator(".zone")).to_have_text("critical")
    expect(limit.locator(".zone")).to_have_class("pill zone zone-critical")
    decisions = page.locator("#budget-decisions tbody tr")
    expect(decisions).to_have_count(2)
    expect(decisions.nth(1).locator(".decision-throttle")).to_have_text("throttle")
    expect(decisions.nth(1)).to_contain_text("claude-sonnet-4-6 → claude-haiku-4-5")
    expect(decisions.nth(1).locator(".reason")).to_contain_text("users")
    expect(decisions.nth(0).locator(".reason")).to_contain_text("critical zone")
    expect(decisions.nth(0).locator("a")).to_have_attribute("href", f"/executions/{RUN}")
    expect(page.locator("#spend-chart")).to_have_attribute("data-drawn", "true")
    spend = drawn(page, "#spend-chart")
    assert spend["chart"] and spend["painted"] and spend["axis"] == "y"  # USD, not the runs axis
    assert sorted(v for v in spend["data"] if v) == [0.3, 0.42, 0.75, 1.1]
    save(page, "budgets.png")

    page.goto(api.url + "/usage?window=7d")
    expect(page.locator("#usage-executions")).to_have_text("4")
    expect(page.locator("#usage-cached")).to_have_text("1500")
    expect(page.locator("#usage-saving")).to_have_text("0.5")
    for canvas in ("#usage-chart", "#input-chart", "#agents-chart", "#models-chart"):
        expect(page.locator(canvas)).to_have_attribute("data-drawn", "true")
        assert drawn(page, canvas)["painted"], canvas
    models = page.request.get(api.url + "/api/usage?window=7d").json()["models"]
    assert [m["model"] for m in models] == ["claude-sonnet-4-6", "claude-haiku-4-5", "gpt-4.1-mini"]
    assert drawn(page, "#models-chart")["data"] == [float(m["costUSD"]) for m in models]
    expect(page.locator("#usage-models tbody tr")).to_have_count(3)
    save(page, "usage.png")
    assert errors == []  # no CSP violation, no script error
    context.close()


def applied(gw: GatewayServer, name: str, present: bool = True, timeout: float = 20) -> None:
    """Wait until the gateway's ledger has (or no longer has) an admin policy or throttle."""
    deadline = time.monotonic() + patient(timeout)
    while any(p.name == name for p in gw.gateway.ledger.policies) is not present:
        assert time.monotonic() < deadline, f"the gateway did not {'apply' if present else 'drop'} {name}"
        time.sleep(0.1)


def test_an_admin_sets_a_policy_and_throttles_a_user_who_sees_why(
    browser: Browser, governed_api: tuple[ApiServer, GatewayServer, ScriptedLLM], namespace: str
) -> None:
    api, gw, llm = governed_api
    admin = browser.new_context(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page = admin.new_page()
    # A refused form answers 422, which Chromium logs as a failed resource: expected here, nothing else.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "422" not in m.text else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    assert page.request.post(api.url + "/api/session/token", data={"token": "admin-token-for-tests"}).ok
    alice = browser.new_context(viewport={"width": 1280, "height": 900})
    alice_page = alice.new_page()
    alice_page.goto(api.url + "/budgets")
    alice_id = alice_page.request.get(api.url + "/api/me").json()["id"]

    page.goto(api.url + "/budgets")
    users = page.locator('#budget-policies tr[data-policy="users"]')
    expect(users.locator(".source-config")).to_have_text("governance file · read-only")
    expect(users.locator("button")).to_have_count(0)

    form = page.locator("#policy-form")
    form.locator('[name="name"]').fill("team-a")
    form.locator('[name="scope"]').select_option("agent")
    form.locator('[name="match"]').fill(f"{namespace}/*")
    form.locator('.limit [name="window"]').fill("5x")
    form.locator('.limit [name="costUSD"]').fill("2.50")
    form.locator("#save-policy").click()
    expect(form.locator('.field-error[data-for="limits"]')).to_contain_text("limits.0.window")
    form.locator('.limit [name="window"]').fill("day")
    form.locator("#save-policy").click()
    team = page.locator('#budget-policies tr[data-policy="team-a"]')
    expect(team.locator(".source-admin")).to_have_text("admin")
    expect(team).to_contain_text("$2.50 / day")
    applied(gw, "team-a")

    throttle = page.locator("#throttle-form")
    throttle.locator('[name="scope"]').select_option("user")
    throttle.locator('[name="subject"]').fill(alice_id)
    throttle.locator('[name="reason"]').fill("runaway loop in report-writer: paused to the cheaper model")
    throttle.locator("#save-throttle").click()
    row = page.locator("#budget-throttles tbody tr[data-throttle]")
    expect(row).to_have_count(1)
    expect(row.locator(".reason")).to_have_text("runaway loop in report-writer: paused to the cheaper model")
    expect(page.locator("#budget-audit tbody tr")).to_have_count(2)
    applied(gw, f"throttle:{row.get_attribute('data-throttle')}")

    llm.script([{"text": "cheaper"}])
    steered = call(gw, owner_label(alice_id), namespace, RUN, AGENT)
    assert steered.headers["x-agentry-decision"] == "throttle", steered.text
    gw.drain()
    page.goto(api.url + "/budgets")
    expect(page.locator("#budget-throttles tbody tr[data-throttle]")).to_have_count(1)
    save(page, "budgets-admin.png")

    alice_page.goto(api.url + "/budgets")
    expect(alice_page.locator("#budget-admin")).to_have_count(0)  # no controls for a non-admin
    expect(alice_page.locator("#budget-throttles .reason")).to_contain_text("runaway loop in report-writer")
    expect(alice_page.locator("#budget-decisions .reason").first).to_contain_text("throttled by an admin")

    page.locator("#budget-throttles button[data-lift]").click()
    expect(page.locator("#budget-throttles tbody tr.empty")).to_have_text("No manual throttle applies.")
    page.locator('#budget-policies tr[data-policy="team-a"] button[data-delete]').click()
    expect(page.locator('#budget-policies tr[data-policy="team-a"]')).to_have_count(0)
    applied(gw, "team-a", present=False)
    assert errors == []
    admin.close()
    alice.close()
