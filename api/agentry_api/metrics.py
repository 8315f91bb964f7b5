"""Prometheus metrics of the API (one module-level registry: created once per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
