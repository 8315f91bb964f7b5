"""The operator's own list and watch (agentry_operator/controller/informer.py) against the real API
server: the listing, then every event once and in order across the server's renewals of the watch.
(A 410 could not be made to order here: kube-apiserver 1.34 answers a watch from a version older than
its cache, even one compacted away in etcd, from its cache; tests/unit/operator/test_watch.py has
the listing again.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentry_localcluster.kube import ControlPlane
from agentry_operator import kube
from agentry_operator.controller import informer as watch
from tests.fixtures.helpers import patient
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

CONFIGMAPS = kube.raw("v1", "ConfigMap")
Seen = list[tuple[str | None, str]]


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(int(patient(30) / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not seen in time: {what}")


async def _scenario(ns: str) -> Seen:
    client = kube.new_client()
    labels = {"agentry.dev/watch-test": ns}
    seen: Seen = []

    async def handler(event: str | None, obj: dict[str, Any]) -> None:
        seen.append((event, obj["metadata"]["name"]))

    def configmap(name: str) -> Any:
        return CONFIGMAPS.from_dict({"metadata": {"name": name, "namespace": ns, "labels": labels}})

    await client.create(configmap("before"))
    await client.create(CONFIGMAPS.from_dict({"metadata": {"name": "unlabelled", "namespace": ns}}))
    task = asyncio.create_task(watch.Watch(client, client.wire, CONFIGMAPS, labels, ns, handler).run())
    try:
        await _until(lambda: (None, "before") in seen, "the listing")
        for i in range(4):  # over several of the server's one-second watches
            await client.create(configmap(f"cm-{i}"))
            await asyncio.sleep(0.6)
        await client.patch(CONFIGMAPS, "cm-0", {"data": {"k": "v"}}, namespace=ns)  # type: ignore[type-var]
        await client.delete(CONFIGMAPS, "cm-1", namespace=ns)  # type: ignore[type-var]
        await _until(lambda: ("DELETED", "cm-1") in seen, "the deletion")
        await _until(lambda: ("MODIFIED", "cm-0") in seen, "the change")
    finally:
        task.cancel()
        await client.close()
    return seen


def _run(kube_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> tuple[Seen, str]:
    monkeypatch.setenv("KUBECONFIG", str(kube_plane.kubeconfig))
    monkeypatch.setattr(watch, "WATCH_SECONDS", 1)  # the server ends each watch after a second
    with plane_client(kube_plane) as client:
        ns = make_namespace(client, "watch")
    return asyncio.run(_scenario(ns)), ns


def _check_after_the_listing(seen: Seen) -> None:
    for i in range(4):
        assert next(e for e, name in seen if name == f"cm-{i}") == "ADDED"
        assert sum(1 for e, name in seen if (e, name) == ("ADDED", f"cm-{i}")) == 1  # once, not again
    cm1 = [e for e, name in seen if name == "cm-1"]
    assert cm1[-1] == "DELETED" and cm1.index("ADDED") < cm1.index("DELETED")
    assert all(name != "unlabelled" for _, name in seen)  # the label selector is the server's


def test_the_listing_then_every_event_once_across_renewals(
    kube: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, _ = _run(kube, monkeypatch)
    assert seen[0] == (None, "before")
    assert seen.count((None, "before")) == 1  # listed once: each renewal went on from its version
    _check_after_the_listing(seen)
