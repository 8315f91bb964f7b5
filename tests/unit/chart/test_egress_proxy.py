"""The egress proxy in the chart (templates/egress/, workloads.networkPolicy.egress=proxy): on by
default; runs may reach only DNS, the proxy and the gateway, and the proxy only reads pods."""

from __future__ import annotations

from pathlib import Path

import pytest

from .render import NAMESPACE, Obj, RenderError, one, render

pytestmark = pytest.mark.unit


def proxied() -> list[Obj]:
    return render(egress__proxy__enabled="true", workloads__networkPolicy__egress="proxy")


def test_on_by_default_and_the_operator_points_runs_at_it() -> None:
    objs = render()
    assert one(objs, "Deployment", "agentry-egress")
    runs = one(objs, "NetworkPolicy", "agentry-runs")
    assert not any("ipBlock" in peer for rule in runs["spec"]["egress"] for peer in rule["to"])
    operator = one(objs, "Deployment", "agentry-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["AGENTRY_EGRESS_PROXY_URL"] == f"http://agentry-egress.{NAMESPACE}.svc:3128"
    off = render(egress__proxy__enabled="false", workloads__networkPolicy__egress="internet")
    assert not [o for o in off if o["metadata"]["name"].endswith("-egress")]


def test_proxy_mode_needs_the_gateway() -> None:
    with pytest.raises(RenderError, match=r"needs gateway\.enabled"):
        render(gateway__enabled="false")
    render(gateway__enabled="false", workloads__networkPolicy__egress="internet")  # an explicit choice


def test_runs_reach_only_dns_the_proxy_and_the_gateway() -> None:
    objs = proxied()
    runs = one(objs, "NetworkPolicy", "agentry-runs")
    peers = [peer for rule in runs["spec"]["egress"] for peer in rule["to"]]
    assert not [p for p in peers if "ipBlock" in p], peers  # no address range at all
    components = sorted(
        p["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "dns") for p in peers
    )
    assert components == ["dns", "egress", "gateway"]
    (proxy_rule,) = [r for r in runs["spec"]["egress"] if "egress" in str(r["to"])]
    assert proxy_rule["ports"] == [{"protocol": "TCP", "port": 3128}]


def test_proxy_objects_and_their_limits() -> None:
    objs = proxied()
    deployment = one(objs, "Deployment", "agentry-egress")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("agentry/squid:")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "AGENTRY_WORKLOAD_NAMESPACE", "value": "agentry-workloads"} in container["env"]
    role = one(objs, "Role", "agentry-egress")
    assert role["metadata"]["namespace"] == "agentry-workloads"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    binding = one(objs, "RoleBinding", "agentry-egress")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "agentry-egress", "namespace": NAMESPACE}
    ]
    service = one(objs, "Service", "agentry-egress")
    assert service["spec"]["ports"][0]["port"] == 3128


def test_squid_asks_the_helper_and_refuses_private_destinations() -> None:
    conf = one(proxied(), "ConfigMap", "agentry-egress")["data"]["squid.conf"]
    lines = conf.splitlines()
    assert any(
        ln.startswith("external_acl_type agentry_allow ") and "%>a %>rd %>rP %>rm" in ln for ln in lines
    )
    assert "http_access deny !allowed_by_agent" in lines
    assert lines[-1] == "http_access deny all"
    (private,) = [ln for ln in lines if ln.startswith("acl private_dst dst ")]
    for cidr in ("10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8", "fc00::/7"):
        assert cidr in private.split()


def test_only_run_pods_may_connect_to_the_proxy() -> None:
    policy = one(proxied(), "NetworkPolicy", "agentry-egress")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "agentry-workloads"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "agentry-operator"}


def test_proxy_mode_without_the_proxy_is_refused() -> None:
    with pytest.raises(RenderError, match=r"egress\.proxy\.enabled"):
        render(egress__proxy__enabled="false")
    with pytest.raises(RenderError, match="aclCacheSeconds"):
        render(egress__proxy__enabled="true", egress__proxy__aclCacheSeconds="0")


def test_private_exceptions_are_explicit(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "egress: {proxy: {enabled: true, allowedPrivateCidrs: [10.244.0.1/32]}}\n"
        "workloads: {networkPolicy: {egress: proxy}}\n"
    )
    lines = one(render([values]), "ConfigMap", "agentry-egress")["data"]["squid.conf"].splitlines()
    assert "acl allowed_private dst 10.244.0.1/32" in lines
    assert "http_access deny private_dst !allowed_private" in lines
    default = one(proxied(), "ConfigMap", "agentry-egress")["data"]["squid.conf"].splitlines()
    assert "http_access deny private_dst" in default  # no exception unless one is given
