"""The operator's approval deadline agrees with the Agent's onTimeout: Escalate adds the escalation's
time (the API escalates at timeoutSeconds and denies at this deadline)."""

from __future__ import annotations

import pytest

from agentry_operator.handlers.approval import DEFAULT_TIMEOUT_SECONDS, deadline_seconds

pytestmark = pytest.mark.unit


def test_deny_waits_the_timeout() -> None:
    assert deadline_seconds({"approval": {"timeoutSeconds": 900}}) == 900
    assert deadline_seconds({"approval": {"timeoutSeconds": 900, "onTimeout": "Deny"}}) == 900
    assert deadline_seconds({}) == DEFAULT_TIMEOUT_SECONDS
    assert deadline_seconds(None) == DEFAULT_TIMEOUT_SECONDS


def test_escalate_adds_the_escalations_time() -> None:
    escalation = {"subscription": "sub-1a2b", "extraSeconds": 1200}
    spec = {"approval": {"timeoutSeconds": 900, "onTimeout": "Escalate", "escalation": escalation}}
    assert deadline_seconds(spec) == 2100
    spec["approval"]["escalation"] = {"subscription": "sub-1a2b"}
    assert deadline_seconds(spec) == 900 + 3600  # the default extraSeconds


def test_a_spec_the_crd_would_refuse_gets_the_default() -> None:
    assert deadline_seconds({"approval": {"onTimeout": "Escalate"}}) == DEFAULT_TIMEOUT_SECONDS
