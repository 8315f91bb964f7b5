"""`agentry notifications` against the real API and a real local receiver: create (the secret shown
once), list, test delivery (exit 1 when the sink refuses), deliveries, redeliver, delete."""
# ruff: noqa: F811  (the notifying API fixture `napi`, imported from tests/integration/api/test_notifications.py)

from __future__ import annotations

import json

import pytest

from tests.fixtures.notify_receiver import Receiver
from tests.integration.api.server import ApiServer
from tests.integration.api.test_notifications import napi  # noqa: F401

from .conftest import Cli

pytestmark = pytest.mark.integration


@pytest.fixture
def api(napi: ApiServer) -> ApiServer:
    """The API with the receivers' loopback address allowed as a sink (the `cli` fixture's)."""
    return napi


def test_notifications_commands(cli: Cli) -> None:
    receiver = Receiver()
    try:
        done = cli("notifications", "create", "ops", "--url", receiver.url, "-e", "run.failed", "-o", "json")
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        assert created["secret"].startswith("whsec_") and created["events"] == ["run.failed"]
        sub = created["id"]

        listed = cli("notifications", "list")
        assert listed.returncode == 0 and sub in listed.stdout and "run.failed" in listed.stdout
        assert "whsec_" not in cli("notifications", "list", "-o", "json").stdout, "the secret is shown once"

        tested = cli("notifications", "test", sub)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert receiver.received[-1].headers["webhook-id"].startswith("test-")
        receiver.script = [500]
        refused = cli("notifications", "test", sub, "-o", "json")
        assert refused.returncode == 1 and json.loads(refused.stdout)["status"] == 500

        assert "nothing to show" in cli("notifications", "deliveries", "--state", "dead").stdout
        missing = cli("notifications", "redeliver", "dl-0000")
        assert missing.returncode != 0 and "not found" in missing.stderr

        bad = cli("notifications", "create", "x", "--url", "http://169.254.169.254/")
        assert bad.returncode != 0 and "metadata" in bad.stderr

        assert cli("notifications", "delete", sub).returncode == 0
        assert sub not in cli("notifications", "list").stdout
    finally:
        receiver.close()
