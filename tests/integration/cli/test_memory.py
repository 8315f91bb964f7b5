"""`agentry agents memory` against the real API on the governed stack of the API's memory tests
(tests/integration/api/test_memory.py): the agent's entries as a table and JSON, --delete forgets a
key, and an agent without memory exits with the API's reason."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.api import test_memory as governed
from tests.integration.api.helpers import create_agent
from tests.integration.api.test_memory import memory_agent

from .conftest import Cli

pytestmark = pytest.mark.integration

plane, gateway, governed_operator = governed.plane, governed.gateway, governed.governed_operator
api, gateway_api = governed.api, governed.gateway_api
kube_client, namespace = governed.kube_client, governed.namespace


def test_memory_lists_and_forgets_entries(cli: Cli, user: httpx.Client) -> None:
    agent = memory_agent(user)
    for key, value in (("city", "Seoul"), ("style", "bullets")):
        assert user.put(f"/api/agents/{agent}/memory/{key}", json={"value": value}).status_code == 200

    table = cli("agents", "memory", agent)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["KEY", "VALUE", "UPDATED", "BY"]
    assert [line.split()[:2] for line in lines[1:]] == [["city", "Seoul"], ["style", "bullets"]]

    forgot = cli("agents", "memory", agent, "--delete", "style")
    assert forgot.returncode == 0 and "forgot style" in forgot.stderr, forgot.stderr
    shown = json.loads(cli("agents", "memory", agent, "-o", "json").stdout)
    assert [e["key"] for e in shown["entries"]] == ["city"] and shown["count"] == 1

    plain = create_agent(user)["id"]
    off = cli("agents", "memory", plain)
    assert off.returncode != 0 and "spec.memory.enabled" in off.stderr, off.stderr
