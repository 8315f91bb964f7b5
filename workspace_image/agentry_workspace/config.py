"""Everything a run needs, read once from the mounted files and the environment.

Any problem here is a configuration error (exit 2) with a message that names the file, field or
variable at fault; nothing here raises anything else.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common import outputs
from agentry_common.models import DEFAULT_MODEL_ENV, AgentSpec, ModelSpec, parse_model
from agentry_common.triggers import ENV_INPUT_UNTRUSTED

from .settings import Settings
from .state import ResumeRequest, RunState

ENV_CONFIG_DIR = "AGENTRY_CONFIG_DIR"
ENV_WORKSPACE = "AGENTRY_WORKSPACE"
ENV_RESULT_FILE = "AGENTRY_RESULT_FILE"
STATE_DIR = ".agentry"
STATE_FILE = "state.json"
FULL_RESULT_FILE = "result.json"


class ConfigError(Exception):
    """Bad or missing configuration: exit code 2, message shown as is (no traceback)."""


@dataclass
class RunConfig:
    agent: str
    namespace: str
    spec: AgentSpec
    input_text: str
    correlation_id: str
    execution: str
    deadline_seconds: float
    workspace: Path
    result_file: Path
    env: Mapping[str, str]
    settings: Settings = field(default_factory=lambda: Settings.from_env({}))  # the defaults
    resume: ResumeRequest | None = None
    outputs: tuple[str, ...] = ()  # named outputs to report (AGENTRY_OUTPUTS: a workflow step's)
    input_untrusted: bool = False  # a Trigger's delivery (AGENTRY_INPUT_UNTRUSTED): framed in the prompt
    # The deadline counts from here (config load, at process start), not from the first model call.
    started: float = field(default_factory=time.monotonic)

    @property
    def model(self) -> ModelSpec:
        """spec.model; for a spec without one (a local run: in a cluster the operator fills in the
        installation's default), AGENTRY_DEFAULT_MODEL."""
        if self.spec.model is not None:
            return self.spec.model
        default = self.env.get(DEFAULT_MODEL_ENV, "").strip()
        if not default:
            raise ConfigError(f"spec.model is not set: set it, or {DEFAULT_MODEL_ENV} (provider/name)")
        try:
            return parse_model(default)
        except ValueError as exc:
            raise ConfigError(f"{DEFAULT_MODEL_ENV}: {exc}") from None

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline_seconds - (time.monotonic() - self.started))

    @property
    def state_dir(self) -> Path:
        return self.workspace / STATE_DIR


def _format_validation(err: ValidationError, prefix: str) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in (prefix, *e["loc"]))
        parts.append(f"{loc}: {e['msg']}")
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_agent_document(doc: Any, source: str) -> tuple[str | None, str | None, AgentSpec]:
    """Accept a whole Agent manifest, the operator's {"metadata", "spec"}, or a bare spec."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected an object, got {type(doc).__name__}")
    if "spec" in doc:
        kind = doc.get("kind")
        if kind is not None and kind != c.AGENT_KIND:
            raise ConfigError(f"{source}: kind must be {c.AGENT_KIND}, got {kind!r}")
        meta = doc.get("metadata") or {}
        raw_spec, prefix = doc["spec"], "spec"
    else:
        meta, raw_spec, prefix = {}, doc, "spec"
    try:
        spec = AgentSpec.model_validate(raw_spec)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid agent spec: {_format_validation(err, prefix)}") from None
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return (str(name) if name else None, str(namespace) if namespace else None, spec)


def _deadline(env: Mapping[str, str], spec: AgentSpec) -> float:
    raw = env.get(c.ENV_DEADLINE, "").strip()
    if not raw:
        return float(spec.timeout_seconds)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{c.ENV_DEADLINE} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{c.ENV_DEADLINE} must be positive, got {raw!r}")
    return value


def load_resume(path: Path, workspace: Path) -> ResumeRequest | None:
    """resume.json, if present; its state may be omitted when the workspace still has it."""
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and raw.get("state") is None:
            state_path = workspace / STATE_DIR / STATE_FILE
            if not state_path.exists():
                raise ConfigError(
                    f'{path}: has no "state" and {state_path} does not exist; pass the state '
                    "saved by the approval_request event"
                )
            raw["state"] = json.loads(state_path.read_text(encoding="utf-8"))
        return ResumeRequest.model_validate(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    except ValidationError as err:
        raise ConfigError(f"{path}: {_format_validation(err, 'resume')}") from None


def result_file_from_env(env: Mapping[str, str]) -> Path:
    return Path(env.get(ENV_RESULT_FILE) or c.RESULT_FILE)


def load_pod_config(env: Mapping[str, str]) -> RunConfig:
    """The in-pod contract: files under AGENTRY_CONFIG_DIR (default /etc/agentry) plus env."""
    config_dir = Path(env.get(ENV_CONFIG_DIR) or c.WORKSPACE_CONFIG_DIR)
    agent_path = config_dir / c.AGENT_FILE
    if not agent_path.exists():
        raise ConfigError(f"agent definition not found: {agent_path} (set {ENV_CONFIG_DIR}?)")
    try:
        doc = json.loads(agent_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{agent_path}: not valid JSON ({err})") from None
    name, namespace, spec = parse_agent_document(doc, str(agent_path))
    input_path = config_dir / c.INPUT_FILE
    input_text = input_path.read_text(encoding="utf-8") if input_path.exists() else ""
    workspace = Path(env.get(ENV_WORKSPACE) or c.WORKSPACE_DIR)
    return build_config(
        env,
        spec=spec,
        name=name,
        namespace=namespace,
        input_text=input_text,
        workspace=workspace,
        result_file=result_file_from_env(env),
        resume=load_resume(config_dir / c.RESUME_FILE, workspace),
    )


def build_config(
    env: Mapping[str, str],
    *,
    spec: AgentSpec,
    name: str | None,
    namespace: str | None,
    input_text: str,
    workspace: Path,
    result_file: Path,
    resume: ResumeRequest | None = None,
    execution: str | None = None,
) -> RunConfig:
    agent = name or env.get(c.ENV_AGENT) or "agent"
    if not workspace.is_dir():
        try:
            workspace.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"workspace {workspace} is not a writable directory: {err}") from None
    if not os.access(workspace, os.W_OK):
        raise ConfigError(f"workspace {workspace} is not writable")
    exe = execution or env.get(c.ENV_EXECUTION) or f"local-{uuid.uuid4().hex[:8]}"
    return RunConfig(
        agent=agent,
        namespace=namespace or env.get(c.ENV_NAMESPACE) or "default",
        spec=spec,
        input_text=input_text,
        correlation_id=env.get(c.ENV_CORRELATION_ID) or uuid.uuid4().hex,
        execution=exe,
        deadline_seconds=_deadline(env, spec),
        workspace=workspace.resolve(),
        result_file=result_file,
        env=dict(env),
        settings=_settings(env),
        resume=resume,
        outputs=output_names(env),
        input_untrusted=env.get(ENV_INPUT_UNTRUSTED) == "1",
    )


def _settings(env: Mapping[str, str]) -> Settings:
    try:
        return Settings.from_env(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def output_names(env: Mapping[str, str]) -> tuple[str, ...]:
    names = tuple(n for n in env.get(outputs.ENV_OUTPUTS, "").split(",") if n)
    bad = [n for n in names if not outputs.NAME.match(n)]
    if bad or len(names) > outputs.MAX_OUTPUTS:
        raise ConfigError(
            f"{outputs.ENV_OUTPUTS}: at most {outputs.MAX_OUTPUTS} names like summary_2, got {names}"
        )
    return names


def load_manifest_file(path: Path) -> tuple[str | None, str | None, AgentSpec]:
    """An agent.yaml for `agentry run -f`: YAML or JSON, manifest or bare spec."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    agents = [d for d in docs if not isinstance(d, dict) or d.get("kind", c.AGENT_KIND) == "Agent"]
    if len(agents) != 1:
        raise ConfigError(f"{path}: expected exactly one Agent document, found {len(agents)}")
    return parse_agent_document(agents[0], str(path))


def read_saved_state(workspace: Path) -> RunState:
    path = workspace / STATE_DIR / STATE_FILE
    if not path.exists():
        raise ConfigError(f"no saved run state at {path}: nothing is waiting for approval")
    try:
        return RunState.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise ConfigError(f"{path}: {_format_validation(err, 'state')}") from None
