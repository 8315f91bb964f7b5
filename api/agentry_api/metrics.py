"""Prometheus metrics of the API (one module-level registry: created once per process), served on a
port of their own (`serve_metrics`), never on the API's: the Service and Ingress users reach do not
route it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "agentry_api_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "agentry_api_request_seconds",
    "HTTP request latency by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SSE_CONNECTIONS = Gauge("agentry_api_sse_connections", "Open SSE connections in this process.")
PEER_WAKES = Counter(
    "agentry_api_peer_wakes_total",
    "Wake-up datagrams between API processes: sent, received, refused (forged, stale or repeated).",
    ["outcome"],
)
SSE_REJECTED = Counter("agentry_api_sse_rejected_total", "SSE connections refused with 503 (bound reached).")
WATCH_EVENTS = Counter("agentry_api_watch_events_total", "Watch events processed.", ["resource", "type"])
WATCH_RESTARTS = Counter("agentry_api_watch_restarts_total", "Watch restarts after errors.", ["resource"])
CHAT_TURNS = Counter("agentry_api_chat_turns_total", "Chat designer LLM turns by outcome.", ["outcome"])


def serve_metrics(port: int, address: str) -> Callable[[], None]:
    """Serve /metrics on `port` (0: not at all) in a thread; returns what stops it. A port in use
    fails the start-up, as the operator's does: a scraper would otherwise read another process."""
    if not port:
        return lambda: None
    server, thread = start_http_server(port, address)
    log.info("metrics on %s:%d", address, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
