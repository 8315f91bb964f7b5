"""Agentry operator: registers kopf handlers; each delegates to handlers/ and builders/.

Run: `python -m agentry_operator.main [--all-namespaces | --namespace NS ...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import start_http_server

from agentry_common import constants as c
from agentry_common.pki import LocalPKI

from . import kube
from .backends import cloud_scheduler_backend, needs_cloud_cleanup
from .builders.agent_status import spec_errors
from .config import OperatorConfig, get_config
from .context import OperatorContext, context, find, store
from .handlers.admission import Governance
from .handlers.agent import background_loop, delete_agent_schedule, reconcile_agent
from .handlers.execution import on_execution
from .handlers.outcome import on_job, on_pod
from .handlers.state import State
from .metrics import RECONCILE_SECONDS, RECONCILES

Logger = logging.Logger | logging.LoggerAdapter[Any]

G, V = c.GROUP, c.VERSION
log = logging.getLogger("agentry.operator")


def _webhook_server(config: OperatorConfig) -> kopf.WebhookServer:
    host = config.webhook_host or ("127.0.0.1" if config.webhook_addr == "0.0.0.0" else config.webhook_addr)
    if config.webhook_certfile and config.webhook_keyfile:
        certfile, keyfile, cafile = config.webhook_certfile, config.webhook_keyfile, None
    else:
        pki = LocalPKI(Path(tempfile.mkdtemp(prefix="agentry-webhook-")))
        pair = pki.issue("webhook", host, dns=(host, "localhost"), ips=("127.0.0.1",), server=True)
        certfile, keyfile, cafile = str(pair.cert), str(pair.key), str(pki.ca.cert)
    return kopf.WebhookServer(
        addr=config.webhook_addr,
        port=config.webhook_port,
        host=host,
        certfile=certfile,
        pkeyfile=keyfile,
        cafile=cafile,
    )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = get_config()
    settings.persistence.finalizer = c.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    if config.webhook_enabled:
        settings.admission.server = _webhook_server(config)
        if config.webhook_managed:
            settings.admission.managed = "agentry.dev"
    if config.metrics_port:
        start_http_server(config.metrics_port)
    ctx = OperatorContext(config=config, client=kube.new_client(), state=State())
    # Governance on (AGENTRY_GATEWAY_URL): without token keys this raises and the operator stops.
    ctx.state.governance = Governance.from_config(config)
    if ctx.state.governance is not None:
        log.info("governance on: admission and run tokens through the gateway at %s", config.gateway_base)
    ctx.scheduler = cloud_scheduler_backend(config, log)
    ctx.refresher = asyncio.create_task(background_loop(ctx.client, config, ctx.state, log))
    store(memo, ctx)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx = find(memo)
    if ctx is None:  # start-up failed before storing it
        return
    if ctx.refresher is not None:
        ctx.refresher.cancel()
    await ctx.client.close()
    if ctx.state.governance is not None:
        await ctx.state.governance.aclose()
    if ctx.scheduler is not None:
        await ctx.scheduler.close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Only the built-in minimal logins: importing the official client would double our memory.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.probe(id="executions")
async def executions_known(memo: kopf.Memo, **_: Any) -> int:
    return len(context(memo).state.executions)


class _Timed:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        RECONCILE_SECONDS.labels(self.kind).observe(time.perf_counter() - self.t0)
        RECONCILES.labels(self.kind, "error" if exc_type else "ok").inc()


# --- Executions ------------------------------------------------------------------------------


@kopf.on.event(G, V, "executions")
async def execution_event(type: str, body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if type == "DELETED":
        ctx.state.forget((body["metadata"]["namespace"], body["metadata"]["name"]))
        return
    with _Timed("Execution"):
        item = ctx.state.seen_execution(dict(body))
        await on_execution(ctx.client, ctx.config, ctx.state, item, logger, listing=type is None)


@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
async def job_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with _Timed("Job"):
        ctx = context(memo)
        await on_job(ctx.client, ctx.state, type, dict(body))


@kopf.on.event("", "v1", "pods", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
async def pod_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with _Timed("Pod"):
        ctx = context(memo)
        await on_pod(ctx.client, ctx.state, type, dict(body))


# --- Agents ----------------------------------------------------------------------------------


@kopf.on.create(G, V, "agents", backoff=5)
@kopf.on.update(G, V, "agents", backoff=5)
@kopf.on.resume(G, V, "agents", backoff=5)
async def agent_changed(body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: Any) -> None:
    with _Timed("Agent"):
        ctx = context(memo)
        await reconcile_agent(ctx.client, ctx.config, ctx.state, dict(body), logger, ctx.scheduler)


def _has_cloud_job(body: kopf.Body, memo: kopf.Memo, **_: Any) -> bool:
    ctx = find(memo)
    return needs_cloud_cleanup(dict(body), enabled=ctx is not None and ctx.scheduler is not None)


# Only Agents that may own a Cloud Scheduler job get the finalizer (kopf adds it for this handler).
@kopf.on.delete(G, V, "agents", when=_has_cloud_job, backoff=10)
async def agent_deleted(body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    await delete_agent_schedule(ctx.config, ctx.scheduler, dict(body), logger)


@kopf.on.event(G, V, "agents")
async def agent_event(type: str, body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if type == "DELETED":
        ctx.state.agents.pop(key, None)
        return
    for waiting in ctx.state.seen_agent(dict(body)):  # Executions that arrived before their Agent
        await on_execution(ctx.client, ctx.config, ctx.state, ctx.state.executions[waiting], logger)


def validate_agent(spec: kopf.Spec, **_: Any) -> None:
    config = get_config()
    errors = spec_errors(dict(spec), config.gateway_url, config.default_model_spec)
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)


def _disable_namespace_scanning(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.scanning.disabled = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="agentry-operator")
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="namespace to watch (repeatable); default: AGENTRY_WATCH_NAMESPACES",
    )
    parser.add_argument("--all-namespaces", "-A", action="store_true")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    config = get_config()
    namespaces = args.namespace or config.watch_namespaces
    if config.webhook_enabled:
        kopf.on.validate(G, V, "agents", id="validate-agent", ignore_failures=True)(validate_agent)
    if namespaces and not any(ch in ns for ns in namespaces for ch in "*?[!"):
        # Exact names: no need to list/watch Namespace objects (one less cluster-wide permission).
        kopf.on.startup()(_disable_namespace_scanning)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)
    kopf.run(
        clusterwide=args.all_namespaces or not namespaces,
        namespaces=namespaces,
        standalone=config.peering_name is None,
        peering_name=config.peering_name,
        priority=config.peering_priority,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
