"""`agentry doctor`'s `kubelet pids` line: green with each node's podPidsLimit, red with the fix where
a node has none or its configuration cannot be read (the real node: tests/e2e/node/test_run_bounds.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agentry_cli import nodecheck

pytestmark = pytest.mark.unit


class Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code, self.body, self.text = status, body, str(body)

    def json(self) -> Any:
        return self.body

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


class Kube:
    """The API server's node list and each node's configz (an int limit, or an HTTP status)."""

    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = nodes

    def get(self, path: str) -> Answer:
        if path == "/api/v1/nodes":
            return Answer(200, {"items": [{"metadata": {"name": n}} for n in self.nodes]})
        name = path.split("/")[4]
        value = self.nodes[name]
        if isinstance(value, tuple):
            return Answer(*value)
        return Answer(200, {"kubeletconfig": {"podPidsLimit": value, "containerLogMaxFiles": 3}})


def _check(nodes: dict[str, Any]) -> Any:
    return nodecheck._read(Kube(nodes), time.perf_counter())  # type: ignore[arg-type]


def test_every_node_with_a_limit_is_green_and_named() -> None:
    check = _check({"b": 1024, "a": 512})
    assert check.ok and check.detail == "podPidsLimit a: 512, b: 1024"
    assert _check({}).ok and _check({}).detail == "no nodes yet"


@pytest.mark.parametrize("unset", [-1, 0, None])
def test_a_node_without_a_limit_is_red_with_how_to_set_it(unset: Any) -> None:
    check = _check({"a": 512, "b": unset})
    assert not check.ok and "no per-pod PID limit (podPidsLimit) on b:" in check.detail
    assert "podPidsLimit" in check.hint and "configz" in check.hint and "docs/gke.md" in check.hint


def test_a_configuration_that_cannot_be_read_is_red_with_how_to_check_by_hand() -> None:
    check = _check({"a": (403, 'nodes "a" is forbidden: cannot get resource "nodes/proxy"')})
    assert not check.ok and check.detail.startswith("cannot read the kubelet configuration of a: HTTP 403")
    assert "nodes/proxy" in check.hint and "kubectl get --raw /api/v1/nodes/NODE/proxy/configz" in check.hint


def test_a_big_cluster_is_sampled_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodecheck, "MAX_NODES", 2)
    check = _check({"a": 512, "b": 512, "c": None})
    assert check.ok and check.detail.endswith("(first 2 of 3 nodes)")


def test_no_cluster_is_one_red_line() -> None:
    check = nodecheck.check_kubelets("/no/such/kubeconfig")
    assert not check.ok and check.name == "kubelet pids" and "the cluster" in check.detail
