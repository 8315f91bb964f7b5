"""Chart specs for the dashboard's usage and budget pages: pure builders from `UsageOut`.

Each spec is Chart.js's own config (`type`, `data`, `options`) as plain JSON. The page carries it in
a `data-chart` attribute and static/charts.js hands it to the vendored Chart.js: no inline script,
and the numbers on a chart are the same the API returns.
"""

from __future__ import annotations

from typing import Any

from ..schemas import UsageOut

ACCENT, MUTED = "#3557d6", "#9aa3b5"
PALETTE = ["#3557d6", "#1f8a4c", "#b7791f", "#c2332f", "#7b4bd1", "#0f8c9c", "#6b7385", "#d1568a"]

Spec = dict[str, Any]


def _label(start: str, hourly: bool) -> str:
    """`2026-11-24T07:00:00.000000Z` -> `11-24 07:00` (hourly) or `2026-11-24` (daily)."""
    return f"{start[5:10]} {start[11:16]}" if hourly else start[:10]


def _bar(labels: list[str], series: list[tuple[str, list[float], str]], y_title: str) -> Spec:
    return {
        "type": "bar",
        "data": {
            "labels": labels,
            # The axis named: the page's JSON has sorted keys, and Chart.js puts a dataset without
            # one on the first y scale it meets (`runs` sorts before `y`).
            "datasets": [
                {"label": name, "data": data, "backgroundColor": color, "yAxisID": "y"}
                for name, data, color in series
            ],
        },
        "options": {
            "animation": False,
            "maintainAspectRatio": False,
            "scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": y_title}}},
            "plugins": {"legend": {"display": len(series) > 1}},
        },
    }


def cost_over_time(usage: UsageOut) -> Spec:
    """Spend per bucket (hour for 24h, else day) with the number of runs beside it."""
    hourly = usage.window == "24h"
    labels = [_label(b.start, hourly) for b in usage.buckets]
    spec = _bar(labels, [("cost (USD)", [float(b.costUSD) for b in usage.buckets], ACCENT)], "USD")
    runs: Spec = {"label": "runs", "type": "line", "yAxisID": "runs", "borderColor": MUTED}
    spec["data"]["datasets"].append(runs | {"data": [b.executions for b in usage.buckets]})
    spec["options"]["scales"]["runs"] = {
        "position": "right",
        "beginAtZero": True,
        "ticks": {"precision": 0},  # whole runs
        "grid": {"display": False},
    }
    spec["options"]["plugins"]["legend"]["display"] = True
    return spec


def input_over_time(usage: UsageOut) -> Spec:
    """Input per bucket, stacked: read from the prompt cache, written to it, uncached; with the
    saving (USD) beside it."""
    hourly = usage.window == "24h"
    b = usage.buckets
    spec = _bar(
        [_label(x.start, hourly) for x in b],
        [
            ("cache reads", [float(x.cacheReadTokens) for x in b], PALETTE[1]),
            ("cache writes", [float(x.cacheWriteTokens) for x in b], PALETTE[2]),
            ("uncached input", [float(x.uncachedInputTokens) for x in b], ACCENT),
        ],
        "input tokens",
    )
    saving: Spec = {"label": "saving (USD)", "type": "line", "yAxisID": "usd", "borderColor": MUTED}
    spec["data"]["datasets"].append(saving | {"data": [float(x.savingUSD) for x in b]})
    scales = spec["options"]["scales"]
    scales["x"] = {"stacked": True}
    scales["y"]["stacked"] = True
    scales["usd"] = {
        "position": "right",
        "title": {"display": True, "text": "USD"},
        "grid": {"display": False},
    }
    return spec


def tokens_by_agent(usage: UsageOut) -> Spec:
    """Input and output tokens per agent, stacked; the costliest agent first."""
    labels = [a.agentId or "—" for a in usage.agents]
    spec = _bar(
        labels,
        [
            ("input tokens", [float(a.inputTokens) for a in usage.agents], ACCENT),
            ("output tokens", [float(a.outputTokens) for a in usage.agents], PALETTE[1]),
        ],
        "tokens",
    )
    spec["options"]["scales"]["x"] = {"stacked": True}
    spec["options"]["scales"]["y"]["stacked"] = True
    return spec


def cost_by_model(usage: UsageOut) -> Spec:
    """Each model's share of the spend (runs counted by the model they reported)."""
    models = usage.models
    return {
        "type": "doughnut",
        "data": {
            "labels": [m.model for m in models],
            "datasets": [
                {
                    "label": "cost (USD)",
                    "data": [float(m.costUSD) for m in models],
                    "backgroundColor": [PALETTE[i % len(PALETTE)] for i in range(len(models))],
                }
            ],
        },
        "options": {
            "animation": False,
            "maintainAspectRatio": False,
            "plugins": {"legend": {"position": "right"}},
        },
    }


def usage_charts(usage: UsageOut) -> dict[str, Spec]:
    return {
        "time": cost_over_time(usage),
        "input": input_over_time(usage),
        "agents": tokens_by_agent(usage),
        "models": cost_by_model(usage),
    }
