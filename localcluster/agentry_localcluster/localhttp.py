"""Calls to the local servers (tests, benches, the dev stack) that do not build a TLS context each:
`httpx.get` and friends make a client per call, and with it a context that loads the CA bundle
(agentry_common.tls). Same arguments as httpx's functions."""

from __future__ import annotations

from typing import Any

import httpx

from agentry_common.tls import client_context


def request(method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
    """httpx.request on the shared context, unless the call names its own `verify`."""
    kwargs.setdefault("verify", client_context())
    return httpx.request(method, url, **kwargs)


def get(url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)


def delete(url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)


def client(**kwargs: Any) -> httpx.Client:
    """An httpx.Client on the shared context, unless the call names its own `verify`."""
    kwargs.setdefault("verify", client_context())
    return httpx.Client(**kwargs)
