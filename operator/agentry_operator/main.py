"""Agentry operator: registers kopf handlers; each delegates to handlers/ and builders/.

Run: `python -m agentry_operator.main [--all-namespaces | --namespace NS ...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import functools
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import kopf
from lightkube import ApiError, AsyncClient
from prometheus_client import start_http_server

from agentry_common import constants as c
from agentry_common.heap import freeze_startup_heap, keep_released
from agentry_common.pki import LocalPKI
from agentry_common.policy import AgentPolicy, load_policy
from agentry_common.triggers import TRIGGER_KIND, TRIGGER_PLURAL

from . import jobcheck, kube, logs, webhook
from .backends import cloud_scheduler_backend, needs_cloud_cleanup
from .context import OperatorContext, context, find, store
from .controller.namespaces import has_patterns
from .controller.replicas import Scope, run_replicated
from .essence import HandledEssence
from .handlers.admission import Governance
from .handlers.agent import background_loop, delete_agent_schedule, reconcile_agent
from .handlers.agent_timers import AgentTimers
from .handlers.execution import on_execution
from .handlers.journals import prune_journals
from .handlers.memory import drop_agent_memory, memory_sweep_loop
from .handlers.state import State
from .handlers.workflow_admission import register_webhooks as register_workflow_webhooks
from .pool.pools import Pools
from .registries import RECONCILE, WEBHOOKS
from .run_events import Timed
from .run_events import register as register_runs
from .session import connection_limit, login_handler
from .settings import Settings, get_settings

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

G, V = c.GROUP, c.VERSION
log = logging.getLogger("agentry.operator")


def _webhook_server(config: Settings) -> kopf.WebhookServer:
    host = config.webhook_host or ("127.0.0.1" if config.webhook_addr == "0.0.0.0" else config.webhook_addr)
    if config.webhook_certfile and config.webhook_keyfile:
        certfile, keyfile, cafile = config.webhook_certfile, config.webhook_keyfile, None
    else:
        # Its own CA and key for this process only: gone when it exits (a SIGKILL leaves them).
        workdir = tempfile.mkdtemp(prefix="agentry-webhook-")
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        pki = LocalPKI(Path(workdir))
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


async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: object) -> None:
    """Start-up of the reconciling side: kopf's storage, timeouts, and the operator's context."""
    config = get_settings()
    settings.persistence.finalizer = c.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = HandledEssence(
        prefix=c.KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.watching.chunk_size = kube.LIST_CHUNK  # a restart's listings in pages (three kinds side by side)
    # kopf keeps a worker per object until it has been idle this long (default 5 s): with thousands of
    # Agents changing at once, thousands of idle workers (a task, a queue, a context each).
    settings.queueing.idle_timeout = 0.1
    ctx = OperatorContext(config=config, client=kube.new_client(), state=State())
    ctx.state.gate.policy = get_policy()  # the run gate applies the webhook's policy again at each start
    # Governance on (AGENTRY_GATEWAY_URL): without token keys this raises and the operator stops.
    ctx.state.governance = Governance.from_config(config)
    ctx.state.pools = Pools.from_config(config, ctx.client)  # warm pools (docs/runs.md, "Warm pool")
    if ctx.state.governance is not None:
        log.info("governance on: admission and run tokens through the gateway at %s", config.gateway_base)
    ctx.scheduler = cloud_scheduler_backend(config, log)
    ctx.refresher = asyncio.create_task(background_loop(ctx.client, config, ctx.state, log))
    ctx.releaser = asyncio.create_task(keep_released())
    if ctx.state.governance is not None:
        ctx.sweeper = asyncio.create_task(
            memory_sweep_loop(ctx.client, ctx.state, config.memory_sweep_seconds, log)
        )
    ctx.timers = AgentTimers(ctx.client, ctx.state)
    store(memo, ctx)
    freeze_startup_heap()  # full collections skip what start-up made (agentry_common/heap.py)


async def configure_admission(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: object) -> None:
    """Start-up of the webhook server; on a webhook-only replica also a context for its client."""
    config = get_settings()
    settings.admission.server = _webhook_server(config)
    if config.webhook_managed:
        settings.admission.managed = "agentry.dev"
    if find(memo) is None:
        store(memo, OperatorContext(config=config, client=kube.new_client(), state=State()))


async def cleanup(memo: kopf.Memo, **_: object) -> None:
    ctx = find(memo)
    if ctx is None:  # start-up failed before storing it
        return
    for task in (ctx.refresher, ctx.releaser, ctx.sweeper, *ctx.watches):
        if task is not None:
            task.cancel()
    if ctx.namespaces is not None:
        ctx.namespaces.stop_all()
    ctx.state.queue.cancel()
    await ctx.client.close()
    if ctx.state.governance is not None:
        await ctx.state.governance.aclose()
    if ctx.scheduler is not None:
        await ctx.scheduler.close()


@kopf.on.probe(id="executions", registry=RECONCILE)
async def executions_known(memo: kopf.Memo, **_: object) -> int:
    return len(context(memo).state.executions)


# --- Agents ----------------------------------------------------------------------------------


@kopf.on.create(G, V, "agents", backoff=5, registry=RECONCILE)
@kopf.on.update(G, V, "agents", backoff=5, registry=RECONCILE)
@kopf.on.resume(G, V, "agents", backoff=5, registry=RECONCILE)
async def agent_changed(body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: object) -> None:
    with Timed("Agent"):
        ctx = context(memo)
        await reconcile_agent(ctx.client, ctx.config, ctx.state, dict(body), logger, ctx.scheduler)


def _has_cloud_job(body: kopf.Body, memo: kopf.Memo, **_: object) -> bool:
    ctx = find(memo)
    return needs_cloud_cleanup(dict(body), enabled=ctx is not None and ctx.scheduler is not None)


# Only Agents that may own a Cloud Scheduler job get the finalizer (kopf adds it for this handler).
@kopf.on.delete(G, V, "agents", when=_has_cloud_job, backoff=10, registry=RECONCILE)
async def agent_deleted(body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: object) -> None:
    ctx = context(memo)
    await delete_agent_schedule(ctx.config, ctx.scheduler, dict(body), logger)


@kopf.on.event(G, V, "agents", registry=RECONCILE)
async def agent_event(type: str, body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: object) -> None:
    ctx = context(memo)
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if type == "DELETED":
        ctx.state.agents.pop(key, None)
        if ctx.timers is not None:
            ctx.timers.forget(key)
        # Its runs go with it (garbage collector), and their checkpoint journals too.
        await prune_journals(ctx.state, ctx.state.executions_of(*key), logger)
        await drop_agent_memory(ctx.state, body, logger)  # its memory store (a sweep backs this up)
        return
    waiting_runs = ctx.state.seen_agent(dict(body))
    if ctx.timers is not None:
        ctx.timers.seen(dict(body))
    for waiting in waiting_runs:  # Executions that arrived before their Agent
        await on_execution(ctx.client, ctx.config, ctx.state, ctx.state.executions[waiting], logger)


def _client(memo: kopf.Memo) -> AsyncClient:
    ctx = find(memo)
    if ctx is None:  # a review before start-up finished: refused (failurePolicy Fail retries it)
        raise kopf.AdmissionError("the operator is starting; try again", code=503)
    return ctx.client


def _old(old: kopf.Body | None) -> dict[str, Any] | None:
    return dict(old) if old is not None else None


async def validate_agent(
    body: kopf.Body,
    userinfo: kopf.UserInfo,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    namespace: str | None = None,
    **_: object,
) -> None:
    """Agents (CREATE, UPDATE): the spec rules and the Agent policy, the owner label, and (for a new
    or changed spec) a dry run of the Job its runs would get (jobcheck.py)."""
    config, policy, before = get_settings(), get_policy(), _old(old)
    new = dict(body)
    namespace = str(new.get("metadata", {}).get("namespace") or namespace or "")
    errors = webhook.owner_label_errors(c.AGENT_KIND, new, before, dict(userinfo), config)
    spec = dict(new.get("spec") or {})
    unchanged = before is not None and dict(before.get("spec") or {}) == spec
    names = [] if unchanged else webhook.referenced(spec)
    labels: dict[str, dict[str, str] | None] = {}
    if names:
        try:
            labels = await webhook.secret_labels(_client(memo), namespace, names)
        except ApiError as exc:
            raise kopf.AdmissionError(
                f"spec.secrets: the operator could not read the referenced Secrets to check the agent "
                f"policy ({exc.status.message}); refused",
                code=422,
            ) from exc
    errors += webhook.agent_errors(new, before, config, policy, labels)
    if not errors and not unchanged and namespace:
        errors = await jobcheck.job_errors(_client(memo), new, namespace, config)
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)


def validate_execution_owner(
    body: kopf.Body, userinfo: kopf.UserInfo, old: kopf.Body | None = None, **_: object
) -> None:
    """Executions carrying the owner label (before or after): only the API may set or change it."""
    errors = webhook.owner_label_errors(
        c.EXECUTION_KIND, dict(body), _old(old), dict(userinfo), get_settings()
    )
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)


def validate_trigger_owner(
    body: kopf.Body, userinfo: kopf.UserInfo, old: kopf.Body | None = None, **_: object
) -> None:
    """Triggers: the owner labels, as for Agents (whose runs a delivery starts is decided by them)."""
    errors = webhook.owner_label_errors(TRIGGER_KIND, dict(body), _old(old), dict(userinfo), get_settings())
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)


async def validate_execution(
    body: kopf.Body,
    userinfo: kopf.UserInfo,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    namespace: str | None = None,
    **_: object,
) -> None:
    """Executions: spec.priority within the policy's range; on create, who may start a run of its
    Agent (the run gate holds the same rule for every run, this webhook down or not)."""
    new, before = dict(body), _old(old)
    errors = webhook.execution_errors(new, before, get_policy())
    errors += webhook.parent_errors(new, before, get_settings().governed)
    if before is None:
        namespace = str(new.get("metadata", {}).get("namespace") or namespace or "")
        name = str((new.get("spec") or {}).get("agentRef", {}).get("name") or "")
        try:
            agent = await kube.get_or_none(_client(memo), kube.Agent, name, namespace) if name else None
        except ApiError:
            agent = None  # unread: the run gate decides when the run starts
        errors += webhook.start_errors(new, agent, dict(userinfo), get_settings())
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)


@functools.cache
def get_policy() -> AgentPolicy:
    """The Agent policy (AGENTRY_POLICY_FILE), read once; a malformed file stops the operator."""
    return load_policy(get_settings().policy_file)


def register_webhooks(registry: kopf.OperatorRegistry) -> None:
    """The validating handlers, served at /<id> (the chart's ValidatingWebhookConfiguration names the
    same paths). Agents and owner-labelled Executions fail closed: while the operator is down, those
    writes are refused rather than let through unchecked (persistent: kopf's self-managed configuration
    keeps them when the operator stops). Execution priority fails open, so schedule ticks still create
    runs during an operator restart (the Agent's own priority is checked closed)."""
    kopf.on.validate(
        G,
        V,
        "agents",
        id="validate-agent",
        operations=["CREATE", "UPDATE"],
        ignore_failures=False,
        persistent=True,
        registry=registry,
    )(validate_agent)
    kopf.on.validate(
        G,
        V,
        "executions",
        id="validate-execution-owner",
        operations=["CREATE", "UPDATE"],
        labels={c.LABEL_OWNER: kopf.PRESENT},
        ignore_failures=False,
        persistent=True,
        registry=registry,
    )(validate_execution_owner)
    kopf.on.validate(
        G,
        V,
        "executions",
        id="validate-execution",
        operations=["CREATE", "UPDATE"],
        ignore_failures=True,
        registry=registry,
    )(validate_execution)
    kopf.on.validate(
        G,
        V,
        TRIGGER_PLURAL,
        id="validate-trigger",
        operations=["CREATE", "UPDATE"],
        ignore_failures=False,
        persistent=True,
        registry=registry,
    )(validate_trigger_owner)


def _disable_namespace_scanning(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.scanning.disabled = True


def register(config: Settings, namespaces: list[str], clusterwide: bool = False) -> None:
    """Start-up, clean-up and login in each registry that runs (`namespaces`: the exact names or
    patterns watched, none or `clusterwide` for all); the runs' events; the webhooks in WEBHOOKS
    when replicas elect a leader (every one serves them), else beside the handlers in RECONCILE."""
    scan_namespaces = not namespaces or has_patterns(namespaces)
    login = login_handler(connection_limit(namespaces))
    webhooks = WEBHOOKS if config.leader_election else RECONCILE
    for registry in [RECONCILE] if webhooks is RECONCILE else [RECONCILE, WEBHOOKS]:
        kopf.on.login(registry=registry, id="login")(login)
        if not scan_namespaces:  # exact names: no list/watch of Namespaces (one less permission)
            kopf.on.startup(registry=registry)(_disable_namespace_scanning)
        kopf.on.cleanup(registry=registry)(cleanup)
    kopf.on.startup(registry=RECONCILE)(configure)
    register_runs(RECONCILE, None if clusterwide else namespaces)  # after configure (its context)
    get_policy()  # a malformed policy file stops the operator here, not at a review or a run's start
    if config.webhook_enabled:
        kopf.on.startup(registry=webhooks)(configure_admission)
        register_webhooks(webhooks)
        register_workflow_webhooks(webhooks)


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
    config = get_settings()
    namespaces = args.namespace or config.watch_namespaces
    # One answer to "which namespaces" for everything that reads the config (the run gate lists there).
    config.watch_namespaces = [] if args.all_namespaces else list(namespaces)
    register(config, namespaces, clusterwide=args.all_namespaces)
    if config.metrics_port:
        start_http_server(config.metrics_port)
    logs.configure(args.verbose)
    scope = Scope(clusterwide=args.all_namespaces or not namespaces, namespaces=namespaces)
    if config.leader_election:
        sys.exit(run_replicated(config, scope, args.liveness))
    kopf.run(  # one replica: webhooks and reconciles in one kopf operator, no Lease
        registry=RECONCILE,
        clusterwide=scope.clusterwide,
        namespaces=scope.namespaces,
        standalone=True,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
