"""resume.json as the operator writes it: what the runtime's ResumeRequest accepts, with or without
the decider's name and reason (the API's approvals carry no reason)."""

from __future__ import annotations

import pytest

from agentry_common.models import ApprovalDecision
from agentry_operator.handlers.approval import resume_document
from agentry_workspace.state import Decision

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("decision", "wanted"),
    [
        (
            {"id": "apr-1", "approved": True, "decidedBy": "alice", "reason": "fine"},
            {"approvalId": "apr-1", "approved": True, "decidedBy": "alice", "reason": "fine"},
        ),
        (
            {"id": "apr-1", "approved": True, "decidedBy": "user:ab12", "reason": None},
            {"approvalId": "apr-1", "approved": True, "decidedBy": "user:ab12"},
        ),
        ({"id": "apr-2", "approved": False}, {"approvalId": "apr-2", "approved": False}),
    ],
)
def test_the_decision_leaves_out_what_was_not_given(
    decision: dict[str, object], wanted: dict[str, object]
) -> None:
    given = ApprovalDecision.model_validate(decision)  # as the operator reads spec.approvals
    doc = resume_document(given, None)
    assert doc == {"decision": wanted}
    Decision.model_validate(doc["decision"])  # the runtime's own model takes it
    assert resume_document(given, {"version": 1})["state"] == {"version": 1}
