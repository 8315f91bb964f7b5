"""kopf's diff base built only where a handler reads it (essence.py): the same essence as kopf's own
for the kinds with changing handlers, an empty one for the others, and the set of those kinds in
step with the handlers registered."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from agentry_common import constants as c
from agentry_operator.essence import DIFFED_KINDS, HandledEssence

pytestmark = pytest.mark.unit

ARGS: dict[str, Any] = {"prefix": c.KOPF_ANNOTATION_PREFIX, "key": "last-handled-configuration"}


def agent() -> dict[str, Any]:
    return {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.AGENT_KIND,
        "metadata": {
            "name": "a",
            "namespace": "ns",
            "uid": "u",
            "resourceVersion": "7",
            "generation": 3,
            "labels": {"team": "x"},
            "annotations": {
                "note": "kept",
                f"{c.KOPF_ANNOTATION_PREFIX}/last-handled-configuration": '{"spec": {}}',
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"instructions": "x", "model": {"name": "m"}, "tools": [{"name": "shell"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "archived": {"names": ["a"] * 50}},
    }


def test_a_diffed_kind_gets_kopfs_own_essence_and_the_body_is_not_touched() -> None:
    body = agent()
    before = copy.deepcopy(body)
    ours = HandledEssence(**ARGS).build(body=kopf.Body(body))
    theirs = kopf.AnnotationsDiffBaseStorage(**ARGS).build(body=kopf.Body(copy.deepcopy(body)))
    assert ours == theirs and ours["spec"]["tools"] == [{"name": "shell"}]
    assert ours["metadata"]["annotations"] == {"note": "kept"}
    ours["spec"]["tools"].append({"name": "more"})  # a copy: the body stays as it was
    assert body == before


def test_a_field_handler_gets_kopfs_own_build() -> None:
    body, fields = agent(), ["status.conditions"]
    ours = HandledEssence(**ARGS).build(body=kopf.Body(body), extra_fields=fields)
    theirs = kopf.AnnotationsDiffBaseStorage(**ARGS).build(body=kopf.Body(body), extra_fields=fields)
    assert ours == theirs and ours["status"]["conditions"]


def test_kinds_without_changing_handlers_get_an_empty_essence() -> None:
    storage = HandledEssence(**ARGS)
    for api_version, kind in (
        (f"{c.GROUP}/{c.VERSION}", c.EXECUTION_KIND),
        ("batch/v1", "Job"),
        ("v1", "Pod"),
    ):
        body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": {"a": 1}}
        assert storage.build(body=kopf.Body(body)) == {}
    unnamed = {"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"a": 1}}
    assert storage.build(body=kopf.Body(unnamed)) == {"spec": {"a": 1}, "metadata": {"labels": {"a": "b"}}}


def test_only_a_diffed_kind_has_its_stored_essence_read() -> None:
    storage, key = HandledEssence(**ARGS), f"{c.KOPF_ANNOTATION_PREFIX}/last-handled-configuration"
    assert storage.fetch(body=kopf.Body(agent())) == {"spec": {}}
    # An Execution carrying the annotation anyway (by hand): kopf would read it; nothing reads it here.
    annotated = {**agent(), "kind": c.EXECUTION_KIND}
    assert annotated["metadata"]["annotations"][key] and storage.fetch(body=kopf.Body(annotated)) is None
    assert kopf.AnnotationsDiffBaseStorage(**ARGS).fetch(body=kopf.Body(annotated)) == {"spec": {}}


def test_the_diffed_kinds_are_those_with_changing_handlers() -> None:
    """A create/update/resume/delete handler on another kind needs that kind in DIFFED_KINDS."""
    from agentry_operator import main  # its decorators register the handlers
    from agentry_operator.registries import RECONCILE

    assert main.agent_changed is not None

    plurals = {c.AGENT_KIND: c.AGENT_PLURAL}
    selectors = {(s.group, s.plural or s.any_name) for s in RECONCILE._changing.get_all_selectors()}
    assert selectors == {(group, plurals[kind]) for group, kind in DIFFED_KINDS}
