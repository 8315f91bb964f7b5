"""`agentry triggers` against the real API: create prints the key once, list and show, `test` sends a
signed delivery that starts a run (both schemes), a wrong key exits with the receiver's reason,
deliveries lists what came in, delete."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.api.helpers import create_agent

from .conftest import Cli

pytestmark = pytest.mark.integration


def test_triggers_create_test_deliveries_and_delete(cli: Cli, user: httpx.Client) -> None:
    agent = create_agent(user)["id"]
    made = cli("triggers", "create", "ci", "--agent", agent, "--input", "Build {{ $.ref }}", "-o", "json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    key = created["secret"]
    assert key and created["url"].endswith("/hooks/ci") and created["mapping"]["input"] == "Build {{ $.ref }}"

    table = cli("triggers", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["NAME", "AGENT", "WORKFLOW", "SCHEME"]
    assert "ci" in table.stdout and created["url"] in table.stdout
    shown = json.loads(cli("triggers", "show", "ci", "-o", "json").stdout)
    assert "secret" not in shown and shown["scheme"] == "GitHub"

    sent = cli("triggers", "test", "ci", "--secret", key, "--data", '{"ref": "main"}', "-o", "json")
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["duplicate"] is False and answer["execution"]
    run = user.get(f"/api/executions/{answer['execution']}").json()
    assert run["trigger"] == "Webhook" and run["input"] == "Build main"

    wrong = cli("triggers", "test", "ci", "--secret", "not-the-key")
    assert wrong.returncode != 0 and "SignatureInvalid" in wrong.stderr, wrong.stderr

    generic = cli("triggers", "create", "gen", "--agent", agent, "--scheme", "Generic", "-o", "json")
    gen_key = json.loads(generic.stdout)["secret"]
    via_env = Cli(cli.config_file, {"AGENTRY_TRIGGER_SECRET": gen_key})
    sent = via_env("triggers", "test", "gen", "-o", "json")
    assert sent.returncode == 0 and json.loads(sent.stdout)["execution"], sent.stderr

    listed = cli("triggers", "deliveries", "ci", "-o", "json")
    outcomes = [(d["outcome"], d["reason"]) for d in json.loads(listed.stdout)["items"]]
    assert sorted(outcomes) == [("Accepted", ""), ("Refused", "SignatureInvalid")]
    table = cli("triggers", "deliveries", "ci")
    assert answer["execution"] in table.stdout and "SignatureInvalid" in table.stdout

    assert cli("triggers", "delete", "ci").returncode == 0
    gone = cli("triggers", "show", "ci")
    assert gone.returncode != 0 and "not found" in gone.stderr
