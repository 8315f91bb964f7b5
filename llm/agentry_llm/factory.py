"""Build the provider chain of an agent from its model spec and the environment."""

from __future__ import annotations

from collections.abc import Mapping

from agentry_common.models import ModelRef, ModelSpec
from agentry_common.models import Provider as ProviderKind

from .base import ChatProvider

KEY_ENV: dict[ProviderKind, str] = {
    ProviderKind.ANTHROPIC: "ANTHROPIC_API_KEY",
    ProviderKind.OPENAI: "OPENAI_API_KEY",
}
BASE_URL_ENV: dict[ProviderKind, str] = {
    ProviderKind.ANTHROPIC: "ANTHROPIC_BASE_URL",
    ProviderKind.OPENAI: "OPENAI_BASE_URL",
}


class MissingProviderKey(Exception):
    def __init__(self, missing: list[tuple[str, str]]) -> None:
        self.variables = sorted({var for _, var in missing})
        who = ", ".join(f"{name} needs {var}" for name, var in missing)
        super().__init__(
            f"no API key for the configured model provider(s): set {' and '.join(self.variables)} ({who})"
        )


def chain_refs(spec: ModelSpec) -> list[ModelRef]:
    primary = ModelRef(provider=spec.provider, name=spec.name, base_url=spec.base_url)
    return [primary, *spec.fallbacks]


def base_url_for(ref: ModelRef, env: Mapping[str, str]) -> str | None:
    """The spec's baseURL wins over the environment; neither set means the provider's default."""
    return ref.base_url or env.get(BASE_URL_ENV[ref.provider]) or None


def check_keys(spec: ModelSpec, env: Mapping[str, str]) -> None:
    """Fail before the run starts if any provider of the chain has no key (names the variable)."""
    missing = [
        (f"{ref.provider.value}/{ref.name}", KEY_ENV[ref.provider])
        for ref in chain_refs(spec)
        if not env.get(KEY_ENV[ref.provider], "").strip()
    ]
    if missing:
        raise MissingProviderKey(missing)


def build_provider(
    ref: ModelRef,
    env: Mapping[str, str],
    *,
    timeout: float = 600.0,
    headers: Mapping[str, str] | None = None,
) -> ChatProvider:
    key = env.get(KEY_ENV[ref.provider], "").strip()
    if not key:
        raise MissingProviderKey([(f"{ref.provider.value}/{ref.name}", KEY_ENV[ref.provider])])
    base_url = base_url_for(ref, env)
    # Imported on demand: a run imports only the wire its chain speaks.
    if ref.provider is ProviderKind.OPENAI:
        from .openai_provider import OpenAIProvider

        return OpenAIProvider(
            model=ref.name, api_key=key, base_url=base_url, timeout=timeout, default_headers=headers
        )
    from .anthropic_provider import AnthropicProvider

    return AnthropicProvider(
        model=ref.name, api_key=key, base_url=base_url, timeout=timeout, default_headers=headers
    )


def build_chain_providers(
    spec: ModelSpec,
    env: Mapping[str, str],
    *,
    timeout: float = 600.0,
    headers: Mapping[str, str] | None = None,
) -> list[ChatProvider]:
    check_keys(spec, env)
    return [build_provider(r, env, timeout=timeout, headers=headers) for r in chain_refs(spec)]
