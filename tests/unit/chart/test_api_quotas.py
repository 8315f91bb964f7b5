"""The API's quotas, guest limit and OIDC sign-in as chart values: rendered into the settings the API
reads, with the chart's defaults equal to the API's own (so an install without values is what the docs
say), and an OIDC issuer refused without an audience at render time, as the API refuses it at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentry_api.settings import QUOTAS, Settings

from .render import RenderError, env_of, one, render

pytestmark = pytest.mark.unit


def _api_env(**set_: str) -> dict[str, str]:
    deploy = one(render(**set_), "Deployment", "agentry-api")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"] if "value" in e}


def test_quota_defaults_are_the_apis_own() -> None:
    env = _api_env()
    settings = Settings.model_validate(
        {
            k.removeprefix("AGENTRY_").lower(): v
            for k, v in env.items()
            if "QUOTA" in k
            or k in ("AGENTRY_GUEST_MINTS_PER_HOUR", "AGENTRY_TOKEN_MAX_DAYS", "AGENTRY_FORWARDED_HOPS")
        }
    )
    defaults = Settings()
    quota_fields = [f for f in Settings.model_fields if "quota_" in f]
    assert len(quota_fields) == 2 * len(QUOTAS)  # every quota, for users and for guests
    for field in [*quota_fields, "guest_mints_per_hour", "token_max_days", "forwarded_hops"]:
        assert getattr(settings, field) == getattr(defaults, field), field


def test_quotas_and_forwarded_hops_follow_the_values() -> None:
    env = _api_env(api__quotas__concurrentRuns="2", api__guestQuotas__agents="1")
    assert env["AGENTRY_QUOTA_CONCURRENT_RUNS"] == "2"
    assert env["AGENTRY_GUEST_QUOTA_AGENTS"] == "1"
    assert env["AGENTRY_FORWARDED_HOPS"] == "0"
    behind_ingress = _api_env(api__ingress__enabled="true")
    assert behind_ingress["AGENTRY_FORWARDED_HOPS"] == "1"
    assert _api_env(api__forwardedHops="2")["AGENTRY_FORWARDED_HOPS"] == "2"


def test_oidc_needs_an_audience() -> None:
    with pytest.raises(RenderError, match=r"api\.oidc\.audience is required"):
        render(api__oidc__issuer="https://issuer.example")
    env = _api_env(
        api__oidc__issuer="https://issuer.example",
        api__oidc__audience="agentry",
        **{"api__oidc__allowedDomains[0]": "example.com"},
    )
    assert env["AGENTRY_OIDC_AUDIENCE"] == "agentry"
    assert env["AGENTRY_OIDC_ALLOWED_DOMAINS"] == '["example.com"]'
    assert "AGENTRY_OIDC_ISSUER" not in _api_env()


def test_large_numbers_from_a_values_file_stay_integers(tmp_path: Path) -> None:
    """A values file's numbers reach Helm as floats: 1000000 would be written 1e+06, which the API and the
    operator refuse to start with (found when a benchmark raised the guest limit)."""
    values = tmp_path / "values.yaml"
    values.write_text(
        "api: {guestMintsPerHour: 10000000, quotas: {runsPerDay: 1000000},\n"
        "      guestQuotas: {runsPerDay: 2500000}}\n"
        "operator: {jobTtlSeconds: 3000000}\n"
    )
    objs = render(values=[values])
    api = env_of(one(objs, "Deployment", "agentry-api")["spec"]["template"]["spec"]["containers"][0])
    assert api["AGENTRY_GUEST_MINTS_PER_HOUR"] == "10000000"
    assert api["AGENTRY_QUOTA_RUNS_PER_DAY"] == "1000000"
    assert api["AGENTRY_GUEST_QUOTA_RUNS_PER_DAY"] == "2500000"
    operator = one(objs, "Deployment", "agentry-operator")["spec"]["template"]["spec"]["containers"][0]
    ttl = [v for k, v in env_of(operator).items() if "TTL" in k]
    assert ttl == ["3000000"]


def test_the_operators_run_gate_gets_the_apis_quotas_and_the_owners_agents() -> None:
    """The run gate enforces the API's run quotas on every path (docs/security.md, "Who may start a
    run"): the same values, the identities that act for owners, and a book out of tenants' reach."""
    objs = render(api__quotas__concurrentRuns="3", api__guestQuotas__runsPerDay="7")
    operator = one(objs, "Deployment", "agentry-operator")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(operator)
    assert env["AGENTRY_QUOTA_CONCURRENT_RUNS"] == "3"
    assert env["AGENTRY_GUEST_QUOTA_RUNS_PER_DAY"] == "7"
    assert env["AGENTRY_QUOTA_RUNS_PER_DAY"] == _api_env()["AGENTRY_QUOTA_RUNS_PER_DAY"]
    writers = json.loads(env["AGENTRY_OWNER_LABEL_WRITERS"])
    assert {w.rsplit(":", 1)[1] for w in writers} == {"agentry-api", "agentry-operator", "agentry-tick"}
    state_ns = env["AGENTRY_STATE_NAMESPACE"]
    role = one(objs, "Role", "agentry-operator-run-gate")
    assert role["metadata"]["namespace"] == state_ns != "agentry-workloads"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "patch"]}
    ]
