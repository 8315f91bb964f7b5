"""The node's NetworkPolicy engine (netpol.py) and the image import's one retry (images.py).

The engine itself is proven on a real node in tests/e2e/node/test_networkpolicy.py; here, what it is
started with and allowed to read, and that an import is retried only for containerd's lost-snapshot
error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentry_localcluster import images, netpol
from agentry_localcluster.kube import SERVICE_CIDR
from agentry_localcluster.layout import NODE_BINARIES, NODE_NAME
from agentry_localcluster.prepare import BINARIES
from agentry_localcluster.procs import ServerError

pytestmark = pytest.mark.unit

FLAKE = (
    "`ctr images import` failed: ctr: failed to extract layer sha256:ab: failed to prepare extraction "
    'snapshot "extract-1 sha256:cd": parent snapshot sha256:ef does not exist: not found'
)


def test_kube_router_runs_only_its_network_policy_controller() -> None:
    argv = netpol.kube_router_argv(Path("/assets/kube-router"), Path("/kc"), 41234)
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv[1:])
    assert argv[0] == "/assets/kube-router"
    assert flags["run-firewall"] == "true"
    # Routing, the service proxy and the CNI are the bridge's and kube-proxy's on this node.
    assert flags["run-router"] == flags["run-service-proxy"] == flags["enable-cni"] == "false"
    assert flags["hostname-override"] == NODE_NAME
    assert flags["service-cluster-ip-range"] == SERVICE_CIDR
    assert flags["health-port"] == "41234" and flags["kubeconfig"] == "/kc"


def test_kube_router_may_read_what_policies_select_and_write_nothing_else() -> None:
    role, binding = netpol.RBAC
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for need in (("networking.k8s.io", "networkpolicies"), ("", "pods"), ("", "namespaces"), ("", "nodes")):
        assert granted[need] == {"get", "list", "watch"}, need
    writes = {key for key, verbs in granted.items() if verbs - {"get", "list", "watch"}}
    assert writes == {("", "events"), ("events.k8s.io", "events")}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (subject,) = binding["subjects"]
    assert (subject["kind"], subject["name"]) == ("User", netpol.USER)


def test_kube_router_is_built_before_the_e2e_tier() -> None:
    assert "kube-router" in NODE_BINARIES and "kube-router" in BINARIES["e2e"]
    assert "kube-router" not in BINARIES["integration"]


def _importer(errors: list[str]) -> tuple[list[int], Callable[[], None]]:
    calls: list[int] = []

    def do_import() -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise ServerError(errors[len(calls) - 1])

    return calls, do_import


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tags `ctr images rm` would remove (no containerd here: the unit tier runs before the node's
    packages are installed)."""
    tags: list[str] = []
    monkeypatch.setattr(images, "_ctr_rmi", tags.append)
    return tags


def test_import_is_retried_once_after_containerd_lost_a_parent_snapshot(removed: list[str]) -> None:
    said: list[str] = []
    calls, do_import = _importer([FLAKE])
    images.import_retrying("agentry/x:dev", do_import, said.append)
    assert len(calls) == 2
    assert removed == ["agentry/x:dev"]  # the half-imported image goes before the second import
    assert any("retrying once" in s for s in said), said


def test_import_gives_up_after_the_second_failure(removed: list[str]) -> None:
    calls, do_import = _importer([FLAKE, FLAKE])
    with pytest.raises(ServerError, match="parent snapshot"):
        images.import_retrying("agentry/x:dev", do_import, lambda _: None)
    assert len(calls) == 2 and removed == ["agentry/x:dev"]


def test_other_import_errors_are_not_retried(removed: list[str]) -> None:
    calls, do_import = _importer(["`ctr images import` failed: no space left on device"])
    with pytest.raises(ServerError, match="no space left"):
        images.import_retrying("agentry/x:dev", do_import, lambda _: None)
    assert len(calls) == 1 and removed == []
