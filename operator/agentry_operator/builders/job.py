"""Pure builder of an Execution's Job. No API calls; unit-tested without a cluster."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from agentry_common import constants as c
from agentry_common import outputs, tracing
from agentry_common.checkpoints import ENV_CHECKPOINT_URL, ENV_PARENT_EXECUTION, TERMINATION_GRACE_SECONDS
from agentry_common.exitcodes import FINAL, ExitCode
from agentry_common.memory import ENV_MEMORY_URL
from agentry_common.models import AgentSpec, Trigger
from agentry_common.naming import job_name
from agentry_common.policy import parse_quantity
from agentry_common.triggers import ENV_INPUT_UNTRUSTED
from agentry_common.workspace import ENV_WORKSPACE_LIMIT, size_bytes

from ..settings import Settings
from .follow_up import Parent
from .governance import governed_secrets, token_env
from .kinds import EnvVar, OwnerReference
from .model import with_effective_model
from .workspace import kept_claim, workspace_volume

CONTAINER = "agent"
DEADLINE_GRACE_SECONDS = 30
STATE_KEY = "state.json"  # ConfigMap key keeping a paused run's conversation state
RUNTIME_UID = 10001


def owner_reference(body: Mapping[str, Any], controller: bool = True) -> OwnerReference:
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", c.API_VERSION),
        "kind": body.get("kind", c.EXECUTION_KIND),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def child_labels(agent_name: str, execution_name: str, trigger: str) -> dict[str, str]:
    return {
        c.LABEL_AGENT: agent_name[:63],
        c.LABEL_EXECUTION: execution_name[:63],
        c.LABEL_TRIGGER: trigger,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
    }


def run_inputs(execution: dict[str, Any], agent: dict[str, Any]) -> dict[str, str]:
    """The run's inputs: a snapshot of the Agent at start, and the task text.

    They travel as pod annotations and reach the container as files through a downward-API volume:
    no second object per run (no ConfigMap to create, adopt or collect), and nothing large in env.
    """
    spec = execution["spec"]
    agent_doc = {
        "metadata": {"name": agent["metadata"]["name"], "namespace": execution["metadata"]["namespace"]},
        "spec": agent["spec"],
    }
    return {
        ANNOTATION_AGENT: json.dumps(agent_doc, sort_keys=True, separators=(",", ":")),
        ANNOTATION_INPUT: spec.get("input") or (agent["spec"].get("schedule") or {}).get("input") or "",
    }


ANNOTATION_AGENT = f"{c.GROUP}/agent.json"
ANNOTATION_INPUT = f"{c.GROUP}/input.txt"


def _env(
    execution: dict[str, Any],
    agent: AgentSpec,
    correlation_id: str,
    config: Settings,
    token_secret: str | None,
    parent: Parent | None = None,
) -> list[EnvVar]:
    meta = execution["metadata"]
    env: list[EnvVar] = [
        {"name": c.ENV_CORRELATION_ID, "value": correlation_id},
        {"name": c.ENV_EXECUTION, "value": meta["name"]},
        {"name": c.ENV_AGENT, "value": execution["spec"]["agentRef"]["name"]},
        {"name": c.ENV_NAMESPACE, "value": meta["namespace"]},
        {"name": c.ENV_DEADLINE, "value": str(agent.timeout_seconds)},
        {"name": "HOME", "value": c.WORKSPACE_DIR},
    ]
    if execution["spec"].get("outputs"):
        env.append({"name": outputs.ENV_OUTPUTS, "value": ",".join(execution["spec"]["outputs"])})
    if config.run_anthropic_base_url:
        env.append({"name": "ANTHROPIC_BASE_URL", "value": config.run_anthropic_base_url})
    if config.run_openai_base_url:
        env.append({"name": "OPENAI_BASE_URL", "value": config.run_openai_base_url})
    env.extend(proxy_env(config))
    secrets = agent.secrets
    if config.governed:
        # Governed: the run token is the only "provider key" in the pod; real keys stay in the gateway.
        if not token_secret:
            raise ValueError("a governed run needs its token Secret")
        env.extend(token_env(token_secret, follow_up=parent is not None))
        secrets = governed_secrets(secrets)
        # The gateway keeps the run's checkpoint journal (agentry_common.checkpoints).
        env.append({"name": ENV_CHECKPOINT_URL, "value": config.gateway_base})
        if agent.memory.enabled:  # the token carries the store (governance.run_token): the memory tool
            env.append({"name": ENV_MEMORY_URL, "value": config.gateway_base})
    if parent is not None:
        env.append({"name": ENV_PARENT_EXECUTION, "value": parent.name})
    if execution["spec"].get("trigger") == Trigger.WEBHOOK:  # a Trigger's payload: framed as untrusted
        env.append({"name": ENV_INPUT_UNTRUSTED, "value": "1"})
    taken = {e["name"] for e in env}
    secrets = [s for s in secrets if s.env not in taken and not c.is_reserved_env(s.env)]
    secret_manager: dict[str, str] = {}
    for secret in secrets:
        if secret.secret_key_ref is not None:
            ref = secret.secret_key_ref
            # Only a reference: the kubelet resolves the value; it never passes through Agentry.
            env.append(
                {
                    "name": secret.env,
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
                }
            )
        elif secret.secret_manager is not None:
            secret_manager[secret.env] = secret.secret_manager
    if secret_manager:
        env.append(
            {
                "name": "AGENTRY_SECRET_MANAGER_REFS",
                "value": json.dumps(secret_manager, sort_keys=True),
            }
        )
    return env


def proxy_env(config: Settings) -> list[EnvVar]:
    """The egress proxy for every tool: AGENTRY_EGRESS_PROXY (the http tool), HTTP(S)_PROXY in both
    spellings (curl, pip, requests, ...). The gateway is reached directly (the NetworkPolicy allows it);
    everything else only through the proxy, which opens the Agent's own allowedHosts."""
    if not config.egress_proxy_url:
        return []
    url = config.egress_proxy_url
    direct = ["localhost", "127.0.0.1"]
    # The gateway and the trace collector are reached directly, not through the proxy.
    for direct_url in (config.otlp_endpoint if config.tracing else None, config.gateway_url):
        host = urlsplit(direct_url or "").hostname
        if host:
            direct.insert(0, host)
    names = (c.ENV_EGRESS_PROXY, "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    env: list[EnvVar] = [{"name": name, "value": url} for name in names]
    return env + [{"name": name, "value": ",".join(direct)} for name in ("NO_PROXY", "no_proxy")]


def tracing_env(config: Settings, traceparent: str | None) -> list[EnvVar]:
    """OTEL_* of the run container when tracing is on (none when off: the pod exactly as before)."""
    if not config.tracing:
        return []
    values = {
        tracing.ENV_OTLP_ENDPOINT: config.otlp_endpoint,
        tracing.ENV_SERVICE_NAME: tracing.SERVICE_RUNTIME,
        tracing.ENV_SAMPLER: config.traces_sampler,
        tracing.ENV_SAMPLER_ARG: config.traces_sampler_arg,
        tracing.ENV_TRACEPARENT: traceparent,
    }
    return [{"name": name, "value": value} for name, value in values.items() if value]


def active_deadline_seconds(agent: AgentSpec) -> int:
    """The Job's deadline: the runtime's own (spec.timeoutSeconds) plus a grace period."""
    return agent.timeout_seconds + DEADLINE_GRACE_SECONDS


def _resources(agent: AgentSpec, config: Settings) -> dict[str, dict[str, str]]:
    requests = {"cpu": config.default_cpu_request, "memory": config.default_memory_request}
    requests.update(agent.resources.requests)
    limits = {"memory": config.default_memory_limit}
    if config.default_cpu_limit:
        # The default CPU limit, or the Agent's CPU request when larger (a limit below the request
        # would make the pod invalid).
        cpu = config.default_cpu_limit
        asked = requests.get("cpu")
        try:
            if asked and parse_quantity(asked) > parse_quantity(cpu):
                cpu = asked
        except ValueError:
            pass  # a malformed quantity: the API server names it when the Job is created
        limits["cpu"] = cpu
    limits.update(agent.resources.limits)
    return {"requests": requests, "limits": limits}


def _config_volume(resume_configmap: str | None) -> dict[str, object]:
    """/etc/agentry: agent.json and input.txt from pod annotations, plus resume.json when resuming."""
    sources: list[dict[str, object]] = [
        {
            "downwardAPI": {
                "items": [
                    {
                        "path": c.AGENT_FILE,
                        "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_AGENT}']"},
                    },
                    {
                        "path": c.INPUT_FILE,
                        "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_INPUT}']"},
                    },
                ]
            }
        }
    ]
    if resume_configmap:
        sources.append(
            {
                "configMap": {
                    "name": resume_configmap,
                    "items": [{"key": c.RESUME_FILE, "path": c.RESUME_FILE}],
                }
            }
        )
    return {"name": "config", "projected": {"sources": sources}}


def _security_context() -> dict[str, object]:
    """The container's: PSS "restricted", read-only root, the runtime's own uid."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
    }


def _container(
    env: list[EnvVar], resources: dict[str, dict[str, str]], config: Settings
) -> dict[str, object]:
    return {
        "name": CONTAINER,
        "image": config.workspace_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["python", "-m", "agentry_workspace"],
        "env": env,
        "resources": resources,
        "terminationMessagePath": c.RESULT_FILE,
        # The runtime writes its result JSON there; if it crashes first, the log tail explains.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": c.WORKSPACE_CONFIG_DIR, "readOnly": True},
            {"name": "workspace", "mountPath": c.WORKSPACE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _pod_spec(
    container: dict[str, object], config: Settings, resume_configmap: str | None, claim: str | None = None
) -> dict[str, object]:
    security: dict[str, object] = {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if claim:
        # The kubelet gives a kept workspace to fsGroup once, not again on every run's start.
        security["fsGroupChangePolicy"] = "OnRootMismatch"
    pod_spec: dict[str, object] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": security,
        "containers": [container],
        # SIGTERM: the runtime finishes its step, journals it and exits INTERRUPTED within this.
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "volumes": [
            _config_volume(resume_configmap),
            workspace_volume(claim, config.workspace_size_limit),
            {"name": "tmp", "emptyDir": {"sizeLimit": config.workspace_size_limit}},
        ],
    }
    if config.workload_service_account:
        pod_spec["serviceAccountName"] = config.workload_service_account
    return pod_spec


def _pod_failure_policy() -> dict[str, object]:
    """Final exit codes fail the Job at once, and so does a pod that stopped at a checkpoint
    (INTERRUPTED): the operator resumes the run in a new Job at once, where the Job controller would
    wait out its failure back-off first. Disruptions are not counted as retries."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": sorted(int(x) for x in FINAL),
                },
            },
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": [int(ExitCode.INTERRUPTED)],
                },
            },
            # Evictions and preemptions are not the agent's fault: not counted as retries.
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def _job_spec(spec: AgentSpec, config: Settings, template: dict[str, object]) -> dict[str, object]:
    return {
        "backoffLimit": spec.retries,
        # The runtime stops itself at timeoutSeconds and reports `deadline` with its usage; the
        # Job's deadline is the backstop for a runtime that cannot.
        "activeDeadlineSeconds": active_deadline_seconds(spec),
        "ttlSecondsAfterFinished": config.job_ttl_seconds,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": _pod_failure_policy(),
        "template": template,
    }


_PARSED: dict[tuple[str, int, str], AgentSpec] = {}
_PARSED_MAX = 1024  # Agents whose parsed spec is kept


def effective_spec(agent: dict[str, Any], config: Settings) -> AgentSpec:
    """The Agent's spec as its runs use it (the default model filled in). Parsed once per Agent
    generation (a spec change bumps it): a thousand runs of one Agent starting together shared one
    parse, not a thousand. The result is shared, so callers only read it."""
    meta = agent.get("metadata") or {}
    key = (str(meta.get("uid") or ""), int(meta.get("generation") or 0), config.default_model)
    shared = bool(key[0] and key[1])  # a sample Job's Agent (no uid) is parsed each time
    parsed = _PARSED.get(key) if shared else None
    if parsed is None:
        parsed = AgentSpec.model_validate(with_effective_model(agent, config.default_model_spec)["spec"])
        if shared:
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.pop(next(iter(_PARSED)))  # the oldest entry
            _PARSED[key] = parsed
    return parsed


def build_job(
    execution: dict[str, Any],
    agent: dict[str, Any],
    correlation_id: str,
    config: Settings,
    name: str | None = None,
    resume_configmap: str | None = None,
    token_secret: str | None = None,
    spec: AgentSpec | None = None,
    traceparent: str | None = None,
    parent: Parent | None = None,
) -> dict[str, Any]:
    """A Job of an Execution (its first, or one resuming it after an approval), PSS "restricted".

    With the gateway on (`config.governed`), `token_secret` names the Secret holding this Job's run
    token (builders/governance.py): it becomes both provider keys, and no provider key of the Agent's
    spec.secrets is put into the pod. An Agent without spec.model runs on the installation's default
    model, written into the run's agent.json like an explicit one (builders/model.py). `spec`: the
    Agent's spec parsed already (effective_spec), else it is parsed here. `traceparent`: the span the
    pod's trace continues (the reconcile's); else the one the API stored on the Execution.
    `parent`: the run a follow-up continues (its name in env, its journal's keys in the Secret).
    """
    meta = execution["metadata"]
    agent = with_effective_model(agent, config.default_model_spec)
    spec = spec or AgentSpec.model_validate(agent["spec"])
    trigger = execution["spec"].get("trigger", Trigger.MANUAL.value)
    labels = child_labels(agent["metadata"]["name"], meta["name"], trigger)
    annotations = {c.ANNOTATION_CORRELATION_ID: correlation_id, c.ANNOTATION_EXECUTION: meta["name"]}
    env = _env(execution, spec, correlation_id, config, token_secret, parent)
    traceparent = traceparent or (meta.get("annotations") or {}).get(tracing.ANNOTATION_TRACEPARENT)
    if config.tracing and traceparent:
        annotations[tracing.ANNOTATION_TRACEPARENT] = traceparent
    env.extend(tracing_env(config, traceparent))
    claim = kept_claim(agent["metadata"], spec)
    if claim:  # the runtime holds the size where the storage does not (docs/runs.md, "A kept workspace")
        env.append({"name": ENV_WORKSPACE_LIMIT, "value": str(size_bytes(spec.workspace.size))})
    container = _container(env, _resources(spec, config), config)
    pod_spec = _pod_spec(container, config, resume_configmap, claim)
    if spec.runtime_class_name:  # a stronger sandbox (gVisor, Kata): docs/security.md
        pod_spec["runtimeClassName"] = spec.runtime_class_name
    template = {
        "metadata": {"labels": labels, "annotations": {**annotations, **run_inputs(execution, agent)}},
        "spec": pod_spec,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name or job_name(meta["name"], meta["uid"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(execution)],
        },
        "spec": _job_spec(spec, config, template),
    }
