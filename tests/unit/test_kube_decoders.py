"""lightkube's msgspec decoders built before a process's threads (agentry_common.resources): a type's
decoder built on two threads at once crashes the process, so the operator's replica and the test
session build them first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from lightkube.core import decoders
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Secret

from agentry_common.resources import loaded_kinds

pytestmark = pytest.mark.unit

# Pod lists decoded on four threads at once, in a fresh process (the decoders not built yet).
RACE = textwrap.dedent(
    """
    import sys, threading
    from lightkube.core import decoders
    from lightkube.resources.core_v1 import Pod
    from agentry_common.resources import prime_decoders
    if sys.argv[1] == "primed":
        prime_decoders([Pod])
    pod = b'{"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}'
    body = b'{"items": [' + pod + b'], "metadata": {"resourceVersion": "1"}}'
    go = threading.Event()
    def decode():
        go.wait()
        decoders.decode_list(body, Pod)
        decoders.decode_object(pod, Pod)
    threads = [threading.Thread(target=decode) for _ in range(4)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    """
)


def race(mode: str) -> int:
    return subprocess.run([sys.executable, "-c", RACE, mode], capture_output=True).returncode


def test_decoders_built_first_survive_threads_that_crash_the_process_otherwise() -> None:
    assert [race("primed") for _ in range(2)] == [0, 0]
    assert any(race("unprimed") != 0 for _ in range(3))  # the hazard is real here: else this test is moot


def test_every_imported_typed_kind_is_found() -> None:
    kinds = loaded_kinds()
    assert Job in kinds and Secret in kinds
    assert all(getattr(k, "_api_info", None) is not None for k in kinds)


def test_a_replica_builds_the_decoders_before_its_webhook_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentry_operator.controller import replicas

    decoders._list_models.clear()
    seen: list[set[Any]] = []

    class Thread:
        def __init__(self, **_: Any) -> None:
            pass

        def start(self) -> None:
            seen.append(set(decoders._list_models))

        def join(self, timeout: float) -> None:
            pass

    async def lead(*_: Any) -> int:
        return 0

    monkeypatch.setattr(replicas, "threading", SimpleNamespace(Thread=Thread, Event=threading.Event))
    monkeypatch.setattr(replicas, "_campaign_and_lead", lead)
    assert replicas.run_replicated(None, replicas.Scope(clusterwide=True), "") == 0  # type: ignore[arg-type]
    assert seen and {Job, Secret} <= seen[0]
