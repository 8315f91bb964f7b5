"""`agentry doctor`: one command that checks every channel Agentry depends on.

    python -m agentry_cli.doctor [--gateway URL] [--operator-url URL] [--api-url URL]
                                     [--project ID] [--kubeconfig FILE] [--json] [--skip NAME ...]

Checks, each with its latency and, when red, what to do:
  gateway              GET <gateway>/healthz
  channel <name>       each provider channel through the gateway: POST /channels/<name>/probe (one
                       real call, max_tokens 1) with a service token minted from the token keys
                       (AGENTRY_TOKEN_KEYS_DIR / AGENTRY_TOKEN_KEYS, or --token), which GET /channels
                       needs too; without keys, one red line saying so
  firestore            one document read (FIRESTORE_EMULATOR_HOST or Google credentials)
  kube-apiserver, crds the cluster from the kubeconfig (or in-cluster): the Agent and Execution CRDs
  kubelet pids         each node's podPidsLimit, from its kubelet's configz through the API server
                       (nodes/proxy): red where one pod may take every PID of its node (nodecheck.py)
  warm pools           the warm pools' pods waiting for a claim and their memory requests: their
                       idle cost (poolcheck.py; informational)
  operator             the operator's health URL
  api                  the Agentry API's /readyz (only with --api-url)
Exit status 0 when every check is green, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from agentry_common.records import Collection
from agentry_common.tokens import Keyring, mint_service_token

from .settings import get_settings

CRDS = ("agents.agentry.dev", "executions.agentry.dev")


@dataclass
class Check:
    name: str
    ok: bool
    latency_ms: float | None
    detail: str
    hint: str = ""


def channel_hint(name: str, error: str) -> str:
    text = error.lower()
    if "no api key" in text:
        return f"mount the key of channel {name} (its apiKeyFile / apiKeyEnv) into the gateway and restart it"
    if "401" in text or "authentication" in text or "api key" in text or "403" in text:
        return (
            f"the provider refused the gateway's key for {name}: update it in its Secret, restart the gateway"
        )
    if "breaker" in text:
        return (
            f"{name} failed repeatedly and its circuit breaker is open; it retries by itself after the "
            "reset time: check the provider's status page and GET /channels"
        )
    if "404" in text or "not_found" in text or ("model" in text and "not" in text):
        return f"the probe model is unknown to {name}: set probeModel on the channel in the gateway config"
    if "connect" in text or "timed out" in text or "timeout" in text or "name resolution" in text:
        return f"the gateway cannot reach {name}'s baseURL: check DNS, the egress NetworkPolicy and the URL"
    if "429" in text or "rate" in text:
        return f"{name} is rate-limiting the gateway: lower concurrency or raise the provider quota"
    return "see the gateway's logs (kubectl -n agentry logs deploy/agentry-gateway)"


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await fn()
    return result, (time.perf_counter() - started) * 1000


async def check_gateway(client: httpx.AsyncClient, url: str) -> Check:
    try:
        response, ms = await _timed(lambda: client.get(f"{url}/healthz"))
    except httpx.HTTPError as exc:
        return Check(
            "gateway",
            False,
            None,
            f"{url}: {type(exc).__name__}: {exc}",
            "start it (python -m agentry_gateway) or port-forward it: "
            "kubectl -n agentry port-forward svc/agentry-gateway 8090; set --gateway / AGENTRY_GATEWAY_URL",
        )
    if response.status_code != 200:
        return Check(
            "gateway", False, ms, f"/healthz answered HTTP {response.status_code}", "see the gateway's logs"
        )
    return Check("gateway", True, ms, f"{url} answers")


async def check_channels(client: httpx.AsyncClient, url: str, token: str | None) -> list[Check]:
    if token is None:  # the gateway shows its channels to service tokens only
        return [
            Check(
                "channels",
                False,
                None,
                "no service token: the gateway's /channels and probes need one",
                "set AGENTRY_TOKEN_KEYS_DIR (the gateway's token keys) or --token",
            )
        ]
    try:
        response = await client.get(f"{url}/channels", headers={"authorization": f"Bearer {token}"})
        channels = response.json()["channels"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return [
            Check("channels", False, None, f"GET /channels failed: {exc}", "is the gateway up? see above")
        ]
    if not channels:
        return [
            Check(
                "channels",
                False,
                None,
                "the gateway has no provider channel",
                "add channels to the gateway config (channels: [...]), or set ANTHROPIC_API_KEY or "
                "OPENAI_API_KEY for it",
            )
        ]
    checks: list[Check] = []
    for channel in channels:
        name = channel["name"]
        label = f"channel {name}"
        started = time.perf_counter()
        try:
            probe = await client.post(
                f"{url}/channels/{name}/probe", headers={"authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            checks.append(Check(label, False, None, f"probe failed: {exc}", channel_hint(name, str(exc))))
            continue
        ms = (time.perf_counter() - started) * 1000
        if probe.status_code == 401:
            checks.append(
                Check(
                    label,
                    False,
                    ms,
                    "the gateway refused doctor's service token",
                    "use the same token keys as the gateway (AGENTRY_TOKEN_KEYS_DIR from its Secret)",
                )
            )
            continue
        data = probe.json()
        if data.get("ok"):
            checks.append(Check(label, True, ms, f"{data.get('model')} answered ({channel['baseURL']})"))
        else:
            error = str(data.get("error") or "failed")
            checks.append(
                Check(label, False, ms, f"{data.get('model')}: {error}"[:300], channel_hint(name, error))
            )
    return checks


async def check_firestore(project: str, database: str) -> Check:
    where = get_settings().firestore_emulator_host or f"project {project}"
    try:
        from google.cloud.firestore import AsyncClient

        client = AsyncClient(project=project, database=database)
        try:
            _, ms = await _timed(
                lambda: asyncio.wait_for(
                    client.collection(Collection.BUDGET_COUNTERS).document("_ping").get(), 10
                )
            )
        finally:
            api = getattr(client, "_firestore_api_internal", None)
            if api is not None:
                await api.transport.close()
    except Exception as exc:
        return Check(
            "firestore",
            False,
            None,
            f"{where}: {type(exc).__name__}: {str(exc)[:200]}",
            "development: start the emulator (make dev) and export FIRESTORE_EMULATOR_HOST=127.0.0.1:8681; "
            "GKE: check Workload Identity of the service account (roles/datastore.user) and "
            "GOOGLE_CLOUD_PROJECT",
        )
    return Check("firestore", True, ms, f"{where}: read ok")


def check_kube(kubeconfig: str | None) -> list[Check]:
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    source = kubeconfig or "in-cluster / ~/.kube/config"
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        client = Client(config)
        started = time.perf_counter()
        found: list[str] = []
        missing: list[str] = []
        for crd in CRDS:
            try:
                client.get(CustomResourceDefinition, crd)
                found.append(crd)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                missing.append(crd)
        ms = (time.perf_counter() - started) * 1000
    except Exception as exc:
        return [
            Check(
                "kube-apiserver",
                False,
                None,
                f"{source}: {type(exc).__name__}: {str(exc)[:200]}",
                "point KUBECONFIG at your cluster (make dev writes .dev/kube/admin.kubeconfig) and check "
                "`kubectl get crd` works; RBAC must allow reading customresourcedefinitions",
            )
        ]
    checks = [Check("kube-apiserver", True, ms, f"{source}: answers")]
    if missing:
        checks.append(
            Check(
                "crds",
                False,
                None,
                f"missing: {', '.join(missing)}",
                "kubectl apply --server-side -f manifests/crds (or helm upgrade with crds.enabled=true)",
            )
        )
    else:
        checks.append(Check("crds", True, None, ", ".join(found)))
    return checks


async def check_http(client: httpx.AsyncClient, name: str, url: str, hint: str) -> Check:
    try:
        response, ms = await _timed(lambda: client.get(url))
    except httpx.HTTPError as exc:
        return Check(name, False, None, f"{url}: {type(exc).__name__}: {exc}", hint)
    if response.status_code >= 400:
        return Check(name, False, ms, f"{url}: HTTP {response.status_code} {response.text[:160]}", hint)
    return Check(name, True, ms, f"{url}: HTTP {response.status_code}")


def service_token(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    env = get_settings()
    try:
        keyring = Keyring.from_settings(env.token_keys_dir, env.token_keys, env.token_kid)
    except (OSError, ValueError):
        return None
    return mint_service_token(keyring, "doctor")


async def run_checks(args: argparse.Namespace) -> list[Check]:
    skip = set(args.skip or [])
    checks: list[Check] = []
    async with httpx.AsyncClient(timeout=args.timeout) as client:
        if "gateway" not in skip:
            gateway = await check_gateway(client, args.gateway)
            checks.append(gateway)
            if gateway.ok and "channels" not in skip:
                checks.extend(await check_channels(client, args.gateway, service_token(args.token)))
        if "firestore" not in skip:
            checks.append(await check_firestore(args.project, args.database))
        if "kube" not in skip:
            kube = await asyncio.to_thread(check_kube, args.kubeconfig)
            checks.extend(kube)
            if kube[0].ok and "nodes" not in skip:
                from .nodecheck import check_kubelets  # imports this module's Check

                checks.append(await asyncio.to_thread(check_kubelets, args.kubeconfig))
            if kube[0].ok and "pools" not in skip:
                from .poolcheck import check_pools  # the warm pools' idle cost

                checks.append(await asyncio.to_thread(check_pools, args.kubeconfig))
        if "operator" not in skip:
            checks.append(
                await check_http(
                    client,
                    "operator",
                    args.operator_url,
                    "kubectl -n agentry get pods -l app.kubernetes.io/component=operator; its logs say why "
                    "(locally: make dev runs it; --operator-url sets the URL)",
                )
            )
        if args.api_url and "api" not in skip:
            checks.append(
                await check_http(
                    client,
                    "api",
                    f"{args.api_url.rstrip('/')}/readyz",
                    "the API's /readyz names the failing dependency (Firestore, API server)",
                )
            )
    return checks


def render(checks: Sequence[Check], color: bool) -> str:
    green, red, dim, reset = ("\033[32m", "\033[31m", "\033[2m", "\033[0m") if color else ("", "", "", "")
    width = max([len(c.name) for c in checks] + [5])
    lines = [f"  {'CHECK':<{width}}  STATUS  {'LATENCY':>8}  DETAIL"]
    for c in checks:
        status = f"{green}OK    {reset}" if c.ok else f"{red}FAIL  {reset}"
        latency = f"{c.latency_ms:6.0f} ms" if c.latency_ms is not None else f"{'-':>8}"
        lines.append(f"{'✔' if c.ok else '✘'} {c.name:<{width}}  {status}  {latency}  {c.detail}")
        if not c.ok and c.hint:
            lines.append(f"  {'':<{width}}  {dim}fix:{reset} {c.hint}")
    bad = sum(1 for c in checks if not c.ok)
    lines.append("")
    lines.append(
        f"{green}all {len(checks)} checks green{reset}"
        if not bad
        else f"{red}{bad} of {len(checks)} red{reset}"
    )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentry doctor", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    env = get_settings()
    p.add_argument("--gateway", default=env.gateway_url)
    p.add_argument("--token", help="a service token (default: minted from AGENTRY_TOKEN_KEYS_DIR / _KEYS)")
    p.add_argument("--operator-url", default=env.operator_health_url)
    p.add_argument("--api-url", default=env.api_url)
    p.add_argument("--project", default=env.google_cloud_project)
    p.add_argument("--database", default="(default)")
    p.add_argument("--kubeconfig", default=env.kubeconfig)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per check")
    p.add_argument(
        "--skip",
        action="append",
        choices=["gateway", "channels", "firestore", "kube", "nodes", "pools", "operator", "api"],
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    checks = asyncio.run(run_checks(args))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        print(render(checks, color))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
