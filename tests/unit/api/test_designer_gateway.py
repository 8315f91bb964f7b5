"""The designer through the LLM gateway: chosen by the settings, a user token per turn naming the
person who asks, and plain words for the gateway's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentry_api.auth import owner_label
from agentry_api.designer_llm import GatewayLLM, ProviderLLM, _plain, llm_from_settings
from agentry_api.settings import Settings
from agentry_common.tokens import DESIGNER, USER_TOKEN_TTL_SECONDS, Keyring, verify
from agentry_llm import ProviderError

pytestmark = pytest.mark.unit
SECRET = "s" * 40


def test_a_gateway_url_and_keys_put_the_designer_behind_the_gateway(tmp_path: Path) -> None:
    (tmp_path / "2025-05").write_text(SECRET)
    settings = Settings(
        gateway_url="http://agentry-gateway.agentry-system.svc:8090/",
        token_keys_dir=str(tmp_path),
        anthropic_api_key="sk-ant-own-key",  # not used with the gateway
        namespace="agentry",
        chat_model="claude-x",
    )
    llm = llm_from_settings(settings)
    assert isinstance(llm, GatewayLLM)
    assert llm.base_url == "http://agentry-gateway.agentry-system.svc:8090" and llm.model == "claude-x"
    assert llm.max_tokens == settings.chat_max_tokens

    owner = owner_label("user-1")
    claims = verify(llm.token(owner), Keyring.from_dir(tmp_path), expected="user")
    assert (claims.user, claims.namespace, claims.purpose, claims.models) == (
        owner,
        "agentry",
        DESIGNER,
        ("claude-x",),
    )
    assert claims.exp - claims.iat == USER_TOKEN_TTL_SECONDS
    # From AGENTRY_TOKEN_KEYS too (development).
    env_keys = Settings(gateway_url="http://gw:8090", token_keys=f"k1:{SECRET}")
    assert isinstance(llm_from_settings(env_keys), GatewayLLM)


def test_a_gateway_without_keys_refuses_to_start_and_none_keeps_the_own_key() -> None:
    with pytest.raises(ValueError, match=r"AGENTRY_GATEWAY_URL is set.*token keys"):
        llm_from_settings(Settings(gateway_url="http://gw:8090"))
    own = llm_from_settings(Settings(anthropic_api_key="sk-ant-own-key"))
    assert isinstance(own, ProviderLLM) and not own.via_gateway


def test_the_gateways_refusals_in_plain_words() -> None:
    budget = ProviderError(
        "Agentry budget: user 1f3a day costUSD at 100 %", provider="p", status=402, final=True
    )
    assert _plain(budget, True).startswith("the LLM gateway refused the call: Agentry budget:")
    unknown_key = ProviderError("bad token", provider="p", status=401)
    assert "token keys" in _plain(unknown_key, True)
    assert "ANTHROPIC_API_KEY" in _plain(unknown_key, False)
    no_key = ProviderError(
        "Agentry gateway misconfigured: channel 'anthropic' has no API key", provider="p", status=503
    )
    assert _plain(no_key, True) == (
        "the LLM gateway answered 503: Agentry gateway misconfigured: channel 'anthropic' has no API key"
    )
