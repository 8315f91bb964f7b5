"""kopf's own HTTP session (its watches of Agents, Workflows and WorkflowRuns, and its patches), with a
bounded connection pool.

kopf builds its aiohttp session with no connection limit: each request that finds no idle connection
opens another, and every connection opened stays open while it is reused, each with its TLS buffers.
The login below gives kopf the same session kopf would build from the same credentials, but with
room for its watch streams (each holds a connection for as long as it lasts) plus `REQUESTS`
requests at once; the others wait for a connection.

The bound must exceed the number of watch streams, or requests would wait forever: one stream per
watched kind and namespace. With namespace patterns (kopf finds the namespaces for its own watches)
that number is not known in advance, and the session keeps kopf's unlimited pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import kopf

from .controller.namespaces import has_patterns

# Requests of kopf's at once beyond its watch streams: patches of status and progress, posted events.
REQUESTS: Final = 16
# kopf's watch streams per namespace: Agents, Workflows, WorkflowRuns (a test counts the registered
# kinds against this), and room to spare.
WATCHED_KINDS: Final = 8


def connection_limit(namespaces: list[str] | None) -> int:
    """The pool's bound for `namespaces` (exact names), cluster-wide for None; 0 (no bound) when a
    name is a pattern."""
    if namespaces is None or not namespaces:
        return WATCHED_KINDS + REQUESTS
    if has_patterns(namespaces):
        return 0
    return WATCHED_KINDS * len(namespaces) + REQUESTS


def bounded(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """The session kopf would build from `info` (its TLS, headers, basic auth, proxy), with at most
    `limit` connections."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=info.as_aiohttp_basic_auth(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
        aiohttp_session=session,
    )


def login_handler(limit: int) -> Callable[..., Awaitable[kopf.ConnectionInfo | kopf.AiohttpSession | None]]:
    """kopf's login: the in-cluster service account, else the kubeconfig; bounded unless `limit` is 0.
    Async: the session belongs to the operator's event loop."""

    async def login(**kwargs: Any) -> kopf.ConnectionInfo | kopf.AiohttpSession | None:
        # Only the built-in minimal logins: importing the official client would double our memory.
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is None or not limit:
            return info
        return bounded(info, limit)

    return login
