"""`agentry doctor`'s look at the warm pools (docs/runs.md, "Warm pool"): what their waiting pods cost.

The pods of every pool, unclaimed, in every namespace the doctor may list (`GET /api/v1/pods` with the
`agentry.dev/pool` label; a namespaced reader sees its namespace's through --kubeconfig's context).
Informational: green whatever the count, so that the idle cost of a pool is a number an admin sees.
"""

from __future__ import annotations

import time

from httpx2 import Client as HttpClient

from agentry_common.pool import LABEL_POOL, idle_cost

from .doctor import Check
from .nodecheck import cluster_http

NAME = "warm pools"


def check_pools(kubeconfig: str | None) -> Check:
    started = time.perf_counter()
    try:
        with cluster_http(kubeconfig) as http:
            return _read(http, started)
    except Exception as exc:  # a doctor reports every failure as a red line, never a traceback
        return Check(
            NAME,
            False,
            (time.perf_counter() - started) * 1000,
            f"cannot list the pools' pods: {type(exc).__name__}: {str(exc)[:200]}",
            f"doctor needs `list` on pods; check with: kubectl get pods -A -l {LABEL_POOL}",
        )


def _read(http: HttpClient, started: float) -> Check:
    response = http.get("/api/v1/pods", params={"labelSelector": LABEL_POOL})
    response.raise_for_status()
    cost = idle_cost(response.json().get("items") or [])
    return Check(NAME, True, (time.perf_counter() - started) * 1000, cost.describe())
