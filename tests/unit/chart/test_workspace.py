"""The chart's part of kept workspaces: the operator may create and read claims (nothing more), and the
installation's StorageClass reaches it."""

from __future__ import annotations

import pytest

from .render import RenderError, env_of, one, render

pytestmark = pytest.mark.unit


def _operator_env(**values: str) -> dict[str, object]:
    objs = render(**values)
    return env_of(one(objs, "Deployment", "agentry-operator")["spec"]["template"]["spec"]["containers"][0])


def test_the_operator_creates_and_reads_claims_only() -> None:
    role = one(render(), "ClusterRole", "agentry-operator")
    rules = [r for r in role["rules"] if "persistentvolumeclaims" in r["resources"]]
    assert rules == [{"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create", "get"]}]
    assert not any("persistentvolumes" in r["resources"] for r in role["rules"])


def test_the_installations_storage_class() -> None:
    assert "AGENTRY_WORKSPACE_STORAGE_CLASS" not in _operator_env()  # the cluster's default
    env = _operator_env(operator__workspaceStorageClass="standard-rwo")
    assert env["AGENTRY_WORKSPACE_STORAGE_CLASS"] == "standard-rwo"
    with pytest.raises(RenderError, match="workspaceStorageClass"):
        render(operator__workspaceStorageClass="x" * 254)


def test_the_workload_namespace_bounds_kept_workspaces_together() -> None:
    quota = one(render(), "ResourceQuota")
    assert quota["spec"]["hard"]["persistentvolumeclaims"] == "100"
    assert quota["spec"]["hard"]["requests.storage"] == "200Gi"
