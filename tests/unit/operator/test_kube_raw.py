"""Children are created as plain dicts (kube.raw): the same API path as lightkube's typed model, the
manifest sent as built, and the typed model left in lightkube's registry for everything else."""

from __future__ import annotations

import pytest
from lightkube.codecs import from_dict
from lightkube.generic_resource import GenericGlobalResource, GenericNamespacedResource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace

from agentry_operator import kube

pytestmark = pytest.mark.unit

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "run-1", "namespace": "team-a", "labels": {"a": "b"}},
    "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}},
}


def test_a_raw_kind_has_the_typed_models_api_path() -> None:
    plain = kube.raw("batch/v1", "Job")
    assert issubclass(plain, GenericNamespacedResource)
    assert plain._api_info == Job._api_info  # same group, version, plural, verbs
    assert kube.raw("batch/v1", "Job") is plain  # built once
    assert issubclass(kube.raw("v1", "Namespace"), GenericGlobalResource)
    assert kube.raw("v1", "Namespace")._api_info.plural == Namespace._api_info.plural


def test_a_raw_object_is_the_manifest_as_built() -> None:
    obj = kube.raw("batch/v1", "Job").from_dict(JOB)
    assert obj.to_dict() == JOB
    assert obj.metadata is not None and obj.metadata.namespace == "team-a"  # where lightkube posts it


def test_the_typed_model_stays_registered() -> None:
    kube.raw("batch/v1", "Job")
    assert type(from_dict(JOB)) is Job


def test_namespaced_reads_go_by_namespace_and_refuse_a_cluster_kind() -> None:
    assert kube.namespaced("v1", "Pod") is kube.raw("v1", "Pod")
    with pytest.raises(TypeError, match="Namespace is not namespaced"):
        kube.namespaced("v1", "Namespace")
