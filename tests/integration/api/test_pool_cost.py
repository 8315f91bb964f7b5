"""The dashboard's usage page shows the warm pools' idle cost: their pods waiting for a claim in the
API's namespace and the memory those request (agentry_common.pool.idle_cost; `agentry doctor` says the
same: tests/unit/cli/test_poolcheck.py)."""

from __future__ import annotations

import html
from typing import cast

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from agentry_common import constants as c
from agentry_common.pool import LABEL_POOL

from .server import ApiServer

pytestmark = pytest.mark.integration


def _pod(name: str, ns: str, labels: dict[str, str], annotations: dict[str, str]) -> Pod:
    box = {"name": "agent", "image": "agentry/workspace:test", "resources": {"requests": {"memory": "256Mi"}}}
    body = {
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {"containers": [box]},
    }
    return cast(Pod, Pod.from_dict(body))


def test_the_usage_page_shows_what_the_warm_pods_hold(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c_ = api.guest()
    assert 'id="usage-pools"' not in c_.get("/usage").text  # no pool: no line
    for i in range(2):
        kube_client.create(_pod(f"warm-{i}", namespace, {LABEL_POOL: "default"}, {}))
    # A claimed one is a run's now, not an idle cost.
    kube_client.create(_pod("claimed", namespace, {LABEL_POOL: "default"}, {c.ANNOTATION_EXECUTION: "r"}))
    text = html.unescape(c_.get("/usage").text)
    assert f"2 warm pods waiting ({namespace}/default: 2), 512 MiB of memory requested (256 MiB each)" in text
