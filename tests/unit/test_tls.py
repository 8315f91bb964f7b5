"""agentry_common.tls: one context, httpx's trust roots."""

from __future__ import annotations

import ssl

import certifi
import pytest

from agentry_common import tls

pytestmark = pytest.mark.unit


def test_the_context_is_built_once_per_setting_and_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    tls.client_context.cache_clear()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ctx = tls.client_context()
    assert tls.client_context() is ctx
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # certifi's roots, as httpx's default: as many as a context loading only that bundle has.
    assert len(ctx.get_ca_certs()) == len(ssl.create_default_context(cafile=certifi.where()).get_ca_certs())


def test_an_environment_bundle_is_read_only_when_the_environment_is_trusted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls.client_context.cache_clear()
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/bundle.pem")
    with pytest.raises(FileNotFoundError):
        tls.client_context()
    assert tls.client_context(trust_env=False).verify_mode == ssl.CERT_REQUIRED
    tls.client_context.cache_clear()
