"""The model an Agent's runs use: its spec.model, else the installation's default model.

The default (Settings.default_model, AGENTRY_DEFAULT_MODEL, chart value operator.defaultModel)
is filled into the Agent snapshot each run gets (the Job's agent.json), so the runtime reads it exactly
as it reads an explicit spec.model; the Agent's status.model shows which one is in use.
"""

from __future__ import annotations

from typing import Any

from agentry_common.models import ModelSpec, Provider

NO_MODEL = (
    "spec.model is not set and this installation has no default model: set spec.model, or the "
    "operator's default model (chart value operator.defaultModel, env AGENTRY_DEFAULT_MODEL)"
)


def effective_model(spec: dict[str, Any], default: ModelSpec | None) -> dict[str, Any] | None:
    """spec.model as written, else the default's wire form; None when there is neither."""
    model = spec.get("model")
    if model:
        return dict(model)
    return _wire(default) if default is not None else None


def model_label(spec: dict[str, Any], default: ModelSpec | None) -> str | None:
    """provider/name of the model runs use (status.model), or None when there is none."""
    model = effective_model(spec, default)
    if model is None:
        return None
    return f"{model.get('provider') or Provider.ANTHROPIC.value}/{model.get('name', '')}"


def with_effective_model(agent: dict[str, Any], default: ModelSpec | None) -> dict[str, Any]:
    """The Agent with spec.model filled in from the default when it sets none (a copy; never mutated)."""
    spec = agent.get("spec") or {}
    if spec.get("model") or default is None:
        return agent
    return {**agent, "spec": {**spec, "model": _wire(default)}}


def _wire(model: ModelSpec) -> dict[str, str]:
    """The default as a manifest would write it: provider and name (no empty fallbacks)."""
    return {"provider": model.provider.value, "name": model.name}
