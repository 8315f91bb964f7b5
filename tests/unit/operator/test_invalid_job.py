"""Classifying the API server's refusals of a run's children, and the message a refusal leaves."""

from __future__ import annotations

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from agentry_operator.builders.refusal import (
    MAX_API_MESSAGE,
    Action,
    causes,
    classify,
    describe,
)
from agentry_operator.kube import Refused

pytestmark = pytest.mark.unit

RBAC = (
    'jobs.batch is forbidden: User "system:serviceaccount:agentry:operator" cannot create resource '
    '"jobs" in API group "batch" in the namespace "team-a"'
)
INVALID = {
    "code": 422,
    "reason": "Invalid",
    "message": 'Job.batch "run-1-abc" is invalid: spec.template.spec.containers[0].resources.requests: '
    'Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi',
    "details": {
        "kind": "Job",
        "name": "run-1-abc",
        "causes": [
            {"field": "spec.template.spec.containers[0].resources.requests", "reason": "FieldValueInvalid"},
            {"field": "spec.template.spec.containers[0].resources.requests", "reason": "FieldValueInvalid"},
        ],
    },
}


@pytest.mark.parametrize(
    ("code", "message", "action"),
    [
        (422, "Job.batch is invalid", Action.FAIL),
        (400, "bad request", Action.FAIL),
        (413, "request entity too large", Action.FAIL),
        (403, 'admission webhook "policy.example.com" denied the request: no', Action.FAIL),
        (403, "unable to create new content in namespace x because it is being terminated", Action.FAIL),
        (403, "jobs.batch is forbidden: failed quota: q: must specify memory", Action.FAIL),
        (403, "jobs.batch is forbidden: exceeded quota: q, requested: count/jobs.batch=1", Action.WAIT),
        (
            403,
            "jobs.batch is forbidden: status unknown for quota: q, resources: count/jobs.batch",
            Action.WAIT,
        ),
        (403, RBAC, Action.RETRY),
        (429, "too many requests", Action.RETRY),
        (500, "etcdserver: request timed out", Action.RETRY),
        (503, "unavailable", Action.RETRY),
        (504, "timeout", Action.RETRY),
        (404, "namespaces not found", Action.RETRY),
        (None, "", Action.RETRY),
    ],
)
def test_classify(code: int | None, message: str, action: Action) -> None:
    assert classify(code, message) is action


def test_message_names_the_object_the_field_its_origin_and_the_servers_words() -> None:
    assert causes(INVALID) == ["spec.template.spec.containers[0].resources.requests"]
    text = describe("Job", "run-1-abc", INVALID)
    assert text.startswith("the API server refused to create Job run-1-abc (HTTP 422 Invalid); ")
    assert (
        "field spec.template.spec.containers[0].resources.requests (from the Agent's spec.resources)" in text
    )
    assert text.endswith('Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi')


def test_message_of_too_long_annotations_points_at_the_inputs() -> None:
    status = {
        "code": 422,
        "reason": "Invalid",
        "message": "... spec.template.annotations: Too long: may not be more than 262144 bytes",
        "details": {"causes": [{"field": "spec.template.annotations"}]},
    }
    text = describe("Job", "j", status)
    assert "field spec.template.annotations (from the run's inputs" in text and "spec.instructions" in text
    assert text.endswith("Too long: may not be more than 262144 bytes")


def test_message_without_causes_and_long_server_message_is_cut() -> None:
    text = describe("Secret", "s", {"code": 403, "reason": "Forbidden", "message": "x" * 5000})
    assert text.startswith("the API server refused to create Secret s (HTTP 403 Forbidden): xxx")
    assert "field" not in text and text.endswith("...") and len(text) < MAX_API_MESSAGE + 100


def test_refused_carries_the_object_and_its_action() -> None:
    manifest = {"kind": "Job", "metadata": {"name": "run-1-abc", "namespace": "ns"}}
    refused = Refused(manifest, ApiError(status=Status.from_dict(INVALID)))
    assert isinstance(refused, ApiError) and refused.status.code == 422
    assert (refused.kind, refused.name, refused.action) == ("Job", "run-1-abc", Action.FAIL)
    assert "field spec.template.spec.containers[0].resources.requests" in refused.describe()
    quota = Status.from_dict({"code": 403, "reason": "Forbidden", "message": "exceeded quota: q"})
    assert Refused(manifest, ApiError(status=quota)).action is Action.WAIT
