"""Warm pools in the chart (`operator.pools`; docs/runs.md, "Warm pool"): the operator's setting, the
pool's NetworkPolicy (claim port from the operator only, the runs' egress), the gateway's and the egress
proxy's ingress, and the operator's extra verbs; none of it without a pool."""

from __future__ import annotations

import json

import pytest
import yaml

from agentry_common.pool import LABEL_POOL, PoolProfile

from .render import Obj, one, render, render_text

pytestmark = pytest.mark.unit

POOL = {"operator.pools[0].name": "default", "operator.pools[0].max": "3"}


def pooled() -> list[Obj]:
    return [d for d in yaml.safe_load_all(render_text(set_=POOL)) if d]


def _env(objs: list[Obj]) -> dict[str, str]:
    operator = one(objs, "Deployment", "agentry-operator")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in operator["env"]}


def _rules(objs: list[Obj]) -> list[Obj]:
    return list(one(objs, "ClusterRole", "agentry-operator")["rules"])


def test_the_operator_gets_its_pools_with_their_namespace() -> None:
    env = _env(pooled())
    (profile,) = [PoolProfile.model_validate(p) for p in json.loads(env["AGENTRY_POOLS"])]
    assert (profile.name, profile.max, profile.namespaces) == ("default", 3, ("agentry-workloads",))
    assert env["AGENTRY_POOL_CLAIM_PORT"] == "8470"
    assert "AGENTRY_POOLS" not in _env(render())


def test_the_claim_port_is_open_to_the_operator_alone_and_egress_is_the_runs() -> None:
    objs = pooled()
    pool = one(objs, "NetworkPolicy", "agentry-pool")["spec"]
    assert pool["podSelector"]["matchExpressions"] == [{"key": LABEL_POOL, "operator": "Exists"}]
    (rule,) = pool["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert rule["ports"] == [{"protocol": "TCP", "port": 8470}]
    assert pool["egress"] == one(objs, "NetworkPolicy", "agentry-runs")["spec"]["egress"]
    for component in ("gateway", "egress"):
        peers = [
            p
            for r in one(objs, "NetworkPolicy", f"agentry-{component}")["spec"]["ingress"]
            for p in r["from"]
        ]
        assert any(LABEL_POOL in str(p.get("podSelector")) for p in peers), component
    assert not [o for o in render() if o["metadata"]["name"] == "agentry-pool"]


def test_the_operator_may_take_jobs_label_pods_and_keep_claim_keys_only_with_pools() -> None:
    def verbs(rules: list[Obj], resource: str) -> set[str]:
        return {v for r in rules if resource in r["resources"] for v in r["verbs"]}

    with_pools, without = _rules(pooled()), _rules(render())
    assert "patch" in verbs(with_pools, "jobs") and "patch" in verbs(with_pools, "pods")
    assert {"create", "get"} <= verbs(with_pools, "secrets")
    assert "patch" not in verbs(without, "jobs") and "patch" not in verbs(without, "pods")
