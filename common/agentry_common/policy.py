"""One policy for what an Agent may ask for: the API (dashboard users) and the operator's validating
webhook (kubectl) apply the same rules (docs/api.md, "Agent policy"; docs/operations.md).

Pure: `violations(spec, policy, secret_labels)` looks at a spec and at the labels of the Secrets it
references (the caller reads them from the cluster) and names every broken rule with its field path.
The policy is read in one place, `load_policy()`: the JSON (or YAML) file named by
`AGENTRY_POLICY_FILE` (the chart's `policy:` values, rendered into a ConfigMap); unset, the defaults
below. The defaults are conservative; an administrator widens them in that file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import constants as c
from .models import AgentSpec, ScheduleBackend, Tool

POLICY_FILE_ENV = "AGENTRY_POLICY_FILE"
# A Secret opts in to being referenced from spec.secrets with this label (value "true").
LABEL_REFERABLE = f"{c.GROUP}/referable"
# A Secret with this label (value "true") is never referable, whatever else it carries.
LABEL_PROVIDER_KEYS = f"{c.GROUP}/provider-keys"

Path_ = tuple[str | int, ...]
SecretLabels = Mapping[str, Mapping[str, str] | None]


class Rule:
    """Names of the rules, as refusals report them."""

    TOOL = "allowedTools"
    SECRET_NOT_REFERABLE = "secrets.optIn"
    SECRET_FORBIDDEN = "secrets.neverReferable"
    RESOURCES = "maxResources"
    TIMEOUT = "maxTimeoutSeconds"
    CHECKPOINTED_TIMEOUT = "maxCheckpointedTimeoutSeconds"
    RETRIES = "maxRetries"
    HISTORY = "maxHistoryLimit"
    PRIORITY = "priority"
    SCHEDULE_BACKEND = "allowedScheduleBackends"
    MODEL = "allowedModels"
    BASE_URL = "allowedBaseURLs"
    MCP_URL = "allowedMCPServerURLs"
    MCP_STDIO = "mcpStdioServers"
    WORKSPACE_SIZE = "maxWorkspaceSize"
    RUNTIME_CLASS_REQUIRED = "runtimeClass.require"
    RUNTIME_CLASS_ALLOWED = "runtimeClass.allowed"


@dataclass(frozen=True)
class Violation:
    """One broken rule: its name, the field (as a path into the Agent), and what to do about it."""

    rule: str
    path: Path_
    message: str

    @property
    def field(self) -> str:
        """The path as Kubernetes writes it: spec.secrets[0].secretKeyRef.name."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def __str__(self) -> str:
        return f"{self.field}: {self.message} (policy rule {self.rule})"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SecretRules(_Model):
    """Which Kubernetes Secrets spec.secrets[].secretKeyRef may name."""

    # A Secret is referable only with this label set to "true" (an administrator's opt-in per Secret).
    opt_in_label: str = LABEL_REFERABLE
    # Never referable, opted in or not: these names (the chart adds the gateway's provider-key Secret,
    # the token keys, the webhook certificate and the session key) ...
    never_referable_names: list[str] = Field(default_factory=list)
    # ... and any Secret carrying one of these labels with this value: the operator's own Secrets (run
    # tokens, `<job>-token`) and Secrets marked as provider keys.
    never_referable_labels: dict[str, str] = Field(
        default_factory=lambda: {c.LABEL_MANAGED_BY: c.MANAGED_BY, LABEL_PROVIDER_KEYS: "true"}
    )


class RequireRuntimeClass(StrEnum):
    """Which Agents must name a RuntimeClass (spec.runtimeClassName)."""

    NEVER = "never"
    # Agents that run code of the model's choosing: the shell or python tool, or a stdio MCP server.
    CODE_TOOLS = "codeTools"
    ALWAYS = "always"


class RuntimeClassRules(_Model):
    """Which sandbox runs an Agent's pods (docs/security.md, "A stronger sandbox")."""

    require: RequireRuntimeClass = RequireRuntimeClass.NEVER
    # RuntimeClasses spec.runtimeClassName may name; empty: any the cluster has.
    allowed: list[str] = Field(default_factory=list)


class PriorityRange(_Model):
    min: int = Field(default=0, ge=0, le=10)
    # 8 and above is "high" (admitted first when budgets run short): not self-granted by default.
    max: int = Field(default=7, ge=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> PriorityRange:
        if self.min > self.max:
            raise ValueError("priority.min must not exceed priority.max")
        return self


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity (100m, 1.5, 2Gi, 1e3, 500M) as a number; ValueError if malformed."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a resource quantity")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a resource quantity") from exc
    if suffix and suffix[0] in "eE":
        return value * (Decimal(10) ** int(suffix[1:]))
    return value * _SUFFIXES[suffix]


_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    **{p: Decimal(10) ** (3 * i) for i, p in enumerate("kMGTPE", 1)},
    **{p + "i": Decimal(2) ** (10 * i) for i, p in enumerate("KMGTPE", 1)},
}
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))((?:[eE][+-]?\d+)|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?")


class AgentPolicy(_Model):
    """What an Agent may ask for. Conservative defaults; an administrator widens them (chart `policy:`)."""

    # Tools an Agent may enable. All four by default: the run pod is the sandbox (PSS restricted, no
    # service-account token, egress limited by the workload NetworkPolicy); narrow it to forbid shell.
    allowed_tools: list[Tool] = Field(default_factory=lambda: list(Tool))
    secrets: SecretRules = Field(default_factory=SecretRules)
    # Largest request and limit per resource of the run container; a resource not listed may not be
    # asked for at all (e.g. nvidia.com/gpu).
    max_resources: dict[str, str] = Field(default_factory=lambda: {"cpu": "2", "memory": "4Gi"})
    # Largest spec.timeoutSeconds of a run without checkpoints (the gateway off), and with them: a
    # checkpointed run survives the loss of its pod, so it may run longer.
    max_timeout_seconds: int = Field(default=3600, ge=10, le=86400)
    max_checkpointed_timeout_seconds: int = Field(default=86400, ge=10, le=7 * 86400)
    max_retries: int = Field(default=3, ge=0, le=10)
    # Largest spec.historyLimits.succeeded and .failed (kept Executions are objects in etcd; the CRD
    # allows up to 1000).
    max_history_limit: int = Field(default=100, ge=0, le=1000)
    # Largest spec.workspace.size of a kept workspace (a PersistentVolumeClaim per Agent).
    max_workspace_size: str = Field(default="10Gi", pattern=r"^[0-9]+(Mi|Gi|Ti)$")
    priority: PriorityRange = Field(default_factory=PriorityRange)
    runtime_class: RuntimeClassRules = Field(default_factory=RuntimeClassRules)
    # CloudScheduler creates jobs in the installation's Google Cloud project: only when an admin set it
    # up (the chart adds it when operator.cloudScheduler.location is set). Operator runs no pod at all.
    allowed_schedule_backends: list[ScheduleBackend] = Field(
        default_factory=lambda: [ScheduleBackend.CRONJOB, ScheduleBackend.OPERATOR]
    )
    # provider/name patterns (fnmatch: `anthropic/claude-*`, `openai/gpt-4.1*`) of the models and
    # fallbacks an Agent may name; `*/*` allows any model (the gateway's routes still choose channels).
    allowed_models: list[str] = Field(default_factory=lambda: ["*/*"])
    # Model endpoints (spec.model.baseURL, fallbacks' too) an Agent may set, exact or as a prefix ending
    # in "/"; none by default (a run's key, or its token, would be sent there).
    allowed_base_urls: list[str] = Field(default_factory=list, alias="allowedBaseURLs")
    # Remote MCP servers (spec.mcpServers[].url) an Agent may connect to, fnmatch patterns; https only
    # by default (the Agent's secrets may travel in its headers). Its http.allowedHosts must list the
    # host too. Stdio servers run a program from the image like shell does: only where shell is allowed.
    allowed_mcp_server_urls: list[str] = Field(
        default_factory=lambda: ["https://*"], alias="allowedMCPServerURLs"
    )

    @field_validator("max_resources")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for quantity in value.values():
            parse_quantity(quantity)
        return value

    @field_validator("allowed_models")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if "/" not in pattern:
                raise ValueError(
                    f"allowedModels entry {pattern!r}: expected provider/name (patterns allowed)"
                )
        return value


def _secret_violations(spec: AgentSpec, rules: SecretRules, labels_of: SecretLabels) -> list[Violation]:
    found: list[Violation] = []
    for i, secret in enumerate(spec.secrets):
        ref = secret.secret_key_ref
        if ref is None:
            continue
        path: Path_ = ("spec", "secrets", i, "secretKeyRef", "name")
        labels = labels_of.get(ref.name)
        marked = {k: v for k, v in rules.never_referable_labels.items() if (labels or {}).get(k) == v}
        if ref.name in rules.never_referable_names or marked:
            why = f"carries {', '.join(f'{k}={v}' for k, v in marked.items())}" if marked else "is reserved"
            found.append(
                Violation(
                    Rule.SECRET_FORBIDDEN,
                    path,
                    f"Secret {ref.name!r} {why}: provider keys, run tokens and Agentry's own Secrets can "
                    "never be referenced by an agent",
                )
            )
        elif labels is None:
            found.append(
                Violation(
                    Rule.SECRET_NOT_REFERABLE,
                    path,
                    f"Secret {ref.name!r} does not exist in this namespace; an administrator creates it "
                    f"with the label {rules.opt_in_label}=true first",
                )
            )
        elif labels.get(rules.opt_in_label) != "true":
            found.append(
                Violation(
                    Rule.SECRET_NOT_REFERABLE,
                    path,
                    f"Secret {ref.name!r} has not opted in: an administrator labels it "
                    f"{rules.opt_in_label}=true to let agents reference it",
                )
            )
    return found


def _resource_violations(spec: AgentSpec, maxima: Mapping[str, str]) -> list[Violation]:
    found: list[Violation] = []
    for kind, values in (("requests", spec.resources.requests), ("limits", spec.resources.limits)):
        for name, quantity in values.items():
            path: Path_ = ("spec", "resources", kind, name)
            if name not in maxima:
                allowed = ", ".join(sorted(maxima)) or "none"
                found.append(
                    Violation(Rule.RESOURCES, path, f"{name} may not be asked for (allowed: {allowed})")
                )
                continue
            try:
                too_big = parse_quantity(quantity) > parse_quantity(maxima[name])
            except ValueError:
                found.append(Violation(Rule.RESOURCES, path, f"{quantity!r} is not a resource quantity"))
                continue
            if too_big:
                found.append(
                    Violation(Rule.RESOURCES, path, f"{quantity} is more than the {maxima[name]} allowed")
                )
    return found


def _url_allowed(url: str, allowed: Sequence[str]) -> bool:
    return any(
        url == a or url.rstrip("/") == a.rstrip("/") or (a.endswith("/") and url.startswith(a))
        for a in allowed
    )


def _model_violations(spec: AgentSpec, policy: AgentPolicy) -> list[Violation]:
    found: list[Violation] = []
    if spec.model is None:  # the installation's default model: the administrator's choice
        return found
    refs: list[tuple[Path_, Any]] = [(("spec", "model"), spec.model)]
    refs += [(("spec", "model", "fallbacks", i), f) for i, f in enumerate(spec.model.fallbacks)]
    for path, ref in refs:
        label = ref.label
        if not any(fnmatch.fnmatchcase(label, pattern) for pattern in policy.allowed_models):
            found.append(
                Violation(
                    Rule.MODEL,
                    (*path, "name"),
                    f"model {label} is not allowed here "
                    f"(allowed: {', '.join(policy.allowed_models) or 'none'})",
                )
            )
        if ref.base_url is not None and not _url_allowed(ref.base_url, policy.allowed_base_urls):
            found.append(
                Violation(
                    Rule.BASE_URL,
                    (*path, "baseURL"),
                    f"model endpoint {ref.base_url} is not allowed "
                    "(a run's key or token would be sent there); "
                    f"allowed: {', '.join(policy.allowed_base_urls) or 'none'}",
                )
            )
    return found


def _mcp_violations(spec: AgentSpec, policy: AgentPolicy) -> list[Violation]:
    found: list[Violation] = []
    for i, server in enumerate(spec.mcp_servers):
        path: Path_ = ("spec", "mcpServers", i)
        if server.url is not None:
            if not any(fnmatch.fnmatchcase(server.url, p) for p in policy.allowed_mcp_server_urls):
                allowed = ", ".join(policy.allowed_mcp_server_urls) or "none"
                found.append(
                    Violation(
                        Rule.MCP_URL, (*path, "url"), f"MCP server {server.url} is not allowed ({allowed})"
                    )
                )
        elif Tool.SHELL not in policy.allowed_tools:
            found.append(
                Violation(
                    Rule.MCP_STDIO,
                    (*path, "command"),
                    "a stdio MCP server runs a program in the sandbox; the shell tool is not allowed here",
                )
            )
    return found


def runs_code(spec: AgentSpec) -> bool:
    """The Agent runs programs of the model's choosing: shell, python, or a stdio MCP server."""
    return bool({Tool.SHELL, Tool.PYTHON} & set(spec.tools)) or any(s.url is None for s in spec.mcp_servers)


def _runtime_class_violations(spec: AgentSpec, rules: RuntimeClassRules) -> list[Violation]:
    path: Path_ = ("spec", "runtimeClassName")
    name = spec.runtime_class_name
    if name is None:
        needed = rules.require is RequireRuntimeClass.ALWAYS or (
            rules.require is RequireRuntimeClass.CODE_TOOLS and runs_code(spec)
        )
        if not needed:
            return []
        which = "every run" if rules.require is RequireRuntimeClass.ALWAYS else "a run that executes code"
        choices = ", ".join(rules.allowed) or "e.g. gvisor"
        return [
            Violation(
                Rule.RUNTIME_CLASS_REQUIRED, path, f"{which} must use a sandboxing RuntimeClass ({choices})"
            )
        ]
    if rules.allowed and name not in rules.allowed:
        return [
            Violation(
                Rule.RUNTIME_CLASS_ALLOWED,
                path,
                f"RuntimeClass {name} is not allowed (allowed: {', '.join(rules.allowed)})",
            )
        ]
    return []


def violations(
    spec: AgentSpec | Mapping[str, Any],
    policy: AgentPolicy,
    secret_labels: SecretLabels,
    *,
    unchecked_secret_envs: frozenset[str] = frozenset(),
    checkpointed: bool = False,
) -> list[Violation]:
    """Every rule of `policy` that the Agent spec breaks, in field order.

    `checkpointed`: runs keep checkpoints (the LLM gateway is on), so spec.timeoutSeconds is capped by
    maxCheckpointedTimeoutSeconds instead of maxTimeoutSeconds.

    `secret_labels`: the labels of each Secret that spec.secrets names (`referenced_secrets`), None or
    absent when it does not exist. `unchecked_secret_envs`: entries under these variable names skip the
    opt-in rule (a governed run never gets them: the operator drops provider-key entries); never-referable
    Secrets are refused even there.
    """
    spec = spec if isinstance(spec, AgentSpec) else AgentSpec.model_validate(spec)
    found: list[Violation] = []
    for i, tool in enumerate(spec.tools):
        if tool not in policy.allowed_tools:
            allowed = ", ".join(t.value for t in policy.allowed_tools) or "none"
            found.append(
                Violation(
                    Rule.TOOL, ("spec", "tools", i), f"tool {tool.value} is not allowed (allowed: {allowed})"
                )
            )
    unchecked = {i for i, s in enumerate(spec.secrets) if s.env in unchecked_secret_envs}
    for v in _secret_violations(spec, policy.secrets, secret_labels):
        index = v.path[2]
        if v.rule == Rule.SECRET_FORBIDDEN or index not in unchecked:
            found.append(v)
    found += _resource_violations(spec, policy.max_resources)
    history, most_history = spec.history_limits, policy.max_history_limit
    timeout_rule, most_timeout = (
        (Rule.CHECKPOINTED_TIMEOUT, policy.max_checkpointed_timeout_seconds)
        if checkpointed
        else (Rule.TIMEOUT, policy.max_timeout_seconds)
    )
    maxima: list[tuple[str, Path_, int, int, str]] = [
        (timeout_rule, ("spec", "timeoutSeconds"), spec.timeout_seconds, most_timeout, " s"),
        (Rule.RETRIES, ("spec", "retries"), spec.retries, policy.max_retries, ""),
        (Rule.HISTORY, ("spec", "historyLimits", "succeeded"), history.succeeded, most_history, ""),
        (Rule.HISTORY, ("spec", "historyLimits", "failed"), history.failed, most_history, ""),
    ]
    for rule, path, value, most, unit in maxima:
        if value > most:
            found.append(Violation(rule, path, f"{value}{unit} is more than the {most}{unit} allowed"))
    found += priority_violations(spec.priority, policy, ("spec", "priority"))
    size, most_size = spec.workspace.size, policy.max_workspace_size
    if spec.workspace.persistent and parse_quantity(size) > parse_quantity(most_size):
        found.append(
            Violation(
                Rule.WORKSPACE_SIZE,
                ("spec", "workspace", "size"),
                f"{size} is more than the {most_size} allowed",
            )
        )
    if spec.schedule is not None and spec.schedule.backend not in policy.allowed_schedule_backends:
        allowed = ", ".join(b.value for b in policy.allowed_schedule_backends) or "none"
        found.append(
            Violation(
                Rule.SCHEDULE_BACKEND,
                ("spec", "schedule", "backend"),
                f"schedule backend {spec.schedule.backend.value} is not allowed (allowed: {allowed})",
            )
        )
    found += _model_violations(spec, policy)
    found += _mcp_violations(spec, policy)
    found += _runtime_class_violations(spec, policy.runtime_class)
    return found


def priority_violations(priority: int | None, policy: AgentPolicy, path: Path_) -> list[Violation]:
    """The priority rule alone (an Execution's spec.priority overrides its Agent's)."""
    low, high = policy.priority.min, policy.priority.max
    if priority is None or low <= priority <= high:
        return []
    return [Violation(Rule.PRIORITY, path, f"priority {priority} is outside the allowed {low}..{high}")]


_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def is_secret_name(name: str) -> bool:
    """A name a Secret can have (DNS-1123 subdomain); any other cannot exist, so is not looked up."""
    return bool(_SECRET_NAME.match(name))


def referenced_secrets(spec: AgentSpec | Mapping[str, Any]) -> list[str]:
    """Names of the Kubernetes Secrets spec.secrets references (whose labels `violations` needs); names no
    Secret can have are left out (they stay absent, so refused)."""
    spec = spec if isinstance(spec, AgentSpec) else AgentSpec.model_validate(spec)
    names = {s.secret_key_ref.name for s in spec.secrets if s.secret_key_ref is not None}
    return sorted(n for n in names if is_secret_name(n))


def load_policy(path: str | os.PathLike[str] | None = None) -> AgentPolicy:
    """The policy: from `path`, else the file named by AGENTRY_POLICY_FILE, else the defaults.

    JSON, or YAML when PyYAML is installed. A malformed file raises (the component stops at startup
    rather than run with a policy nobody wrote).
    """
    where = path if path is not None else os.environ.get(POLICY_FILE_ENV) or None
    if where is None:
        return AgentPolicy()
    text = Path(where).read_text(encoding="utf-8")
    data: Any
    if str(where).endswith((".yaml", ".yml")):
        import yaml  # type: ignore[import-untyped,unused-ignore]

        data = yaml.safe_load(text)
    else:
        data = json.loads(text) if text.strip() else {}
    return AgentPolicy.model_validate(data or {})
