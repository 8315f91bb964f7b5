"""The processes and the arithmetic of bench/schedule_drift.py.

* The watcher (its own process): the first ADDED event of every scheduled Execution and WorkflowRun,
  with the moment it arrived, on a wall clock aligned to CLOCK_MONOTONIC once by the parent (`clock`),
  so a clock step during the run cannot skew a drift.
* The stand-in node (its own process): there is no kubelet, and 1,000 tick pods a minute are beyond
  the shared local node; like tests' `play_kubelet` it watches the tick pods the Job controller makes,
  does the tick's write (`agentry_operator.tick.create`, over one shared connection) and marks the
  pod Succeeded. Container start and the tick's Python start-up are left out (a lower bound).
* `fires`: drift of each due (namespace, owner) x fire time, and the ones missed or doubled.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lightkube import ALL_NS, AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType, on_error_retry

from agentry_common import constants as c
from agentry_common.models import Trigger
from agentry_operator import tick
from agentry_operator.kube import Execution
from agentry_operator.schedule import parse_time
from agentry_operator.workflows.resources import WorkflowRun

from .streams import percentile

JOB_LABEL = "batch.kubernetes.io/job-name"
SETTLE = 120.0  # seconds after the last fire time by which every fire must be seen (else: missed)
# What the watcher reports, by kind: the resource and the spec field naming its schedule's owner.
WATCHED = {"Execution": (Execution, "agentRef"), "WorkflowRun": (WorkflowRun, "workflowRef")}


def clock() -> float:
    """wall - monotonic, taken once: the bench's processes add it to time.monotonic()."""
    return time.time() - time.monotonic()


def _line(out: IO[str], **fields: Any) -> None:
    out.write(json.dumps(fields) + "\n")
    out.flush()


async def _watch_kind(client: AsyncClient, kind: str, out: IO[str], offset: float) -> None:
    res, owner = WATCHED[kind]
    seen: set[tuple[str, str]] = set()
    labels: dict[str, Any] = {c.LABEL_TRIGGER: Trigger.SCHEDULE.value}
    async for op, obj in client.watch(res, namespace=ALL_NS, labels=labels, on_error=on_error_retry):
        at = time.monotonic() + offset
        meta, spec = obj.metadata, obj.spec
        assert meta is not None
        key = (str(meta.namespace), str(meta.name))
        if op != "ADDED" or key in seen:
            continue
        seen.add(key)
        _line(
            out,
            kind=kind,
            ns=key[0],
            name=key[1],
            owner=spec[owner]["name"],
            scheduled=spec.get("scheduledTime"),
            seen=at,
        )


async def _watch(kubeconfig: str, out: IO[str], offset: float) -> None:
    client = AsyncClient(KubeConfig.from_file(kubeconfig), field_manager="bench-watch")
    await asyncio.gather(*(_watch_kind(client, kind, out, offset) for kind in WATCHED))


def watch_main(kubeconfig: str, out_path: str, offset: float) -> None:
    with Path(out_path).open("a", encoding="utf-8") as out:
        asyncio.run(_watch(kubeconfig, out, offset))


async def _run_pod(client: AsyncClient, pod: Pod, out: IO[str], offset: float) -> None:
    """What a tick pod does (its write), then what its kubelet reports (Succeeded)."""
    assert pod.metadata is not None and pod.spec is not None
    ns, name = str(pod.metadata.namespace), str(pod.metadata.name)
    job = (pod.metadata.labels or {})[JOB_LABEL]
    _line(out, ns=ns, job=job, seen=time.monotonic() + offset)
    env = {e.name: e.value for e in pod.spec.containers[0].env or [] if e.value is not None}
    await tick.create(client, str(env[c.ENV_AGENT]), ns, job)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    done = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
    container = {"name": "tick", "image": "", "imageID": "", "ready": False, "restartCount": 0, "state": done}
    status = {"phase": "Succeeded", "containerStatuses": [container]}
    await client.patch(Pod.Status, name, {"status": status}, namespace=ns, patch_type=PatchType.MERGE)


async def _node(kubeconfig: str, out: IO[str], offset: float) -> None:
    client = AsyncClient(KubeConfig.from_file(kubeconfig), field_manager="bench-node")
    tasks: set[asyncio.Task[None]] = set()
    labels: dict[str, Any] = {c.LABEL_COMPONENT: "schedule"}
    async for op, pod in client.watch(Pod, namespace=ALL_NS, labels=labels, on_error=on_error_retry):
        if op == "ADDED" and not (pod.status and pod.status.phase in ("Succeeded", "Failed")):
            task = asyncio.create_task(_run_pod(client, pod, out, offset))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


def node_main(kubeconfig: str, out_path: str, offset: float) -> None:
    with Path(out_path).open("a", encoding="utf-8") as out:
        asyncio.run(_node(kubeconfig, out, offset))


@dataclass(frozen=True)
class Fires:
    drifts: list[float]  # seconds, one per fire seen
    missed: int
    doubled: int

    def p(self, q: float) -> float:
        return percentile(self.drifts, q)

    @property
    def max(self) -> float:
        return max(self.drifts, default=float("nan"))

    def text(self) -> str:
        spread = f"p50 {self.p(0.5):.3f} s, p99 {self.p(0.99):.3f} s, max {self.max:.3f} s"
        return f"{spread} ({len(self.drifts)} fires; missed {self.missed}, doubled {self.doubled})"


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fires(lines: list[dict[str, Any]], kind: str, due: set[tuple[str, str]], times: list[float]) -> Fires:
    """Drift of each due (namespace, owner) x time in `times` seen; the rest missed, extra doubled."""
    wanted = set(times)
    runs: Counter[tuple[str, str, float]] = Counter()
    drifts: list[float] = []
    for line in lines:
        when = parse_time(line["scheduled"]).timestamp() if line.get("scheduled") else None
        if line.get("kind") != kind or when not in wanted or (line["ns"], line["owner"]) not in due:
            continue
        runs[(line["ns"], line["owner"], when)] += 1
        if runs[(line["ns"], line["owner"], when)] == 1:
            drifts.append(line["seen"] - when)
    missed = len(due) * len(times) - len(runs)
    return Fires(drifts, missed, sum(n - 1 for n in runs.values()))


def pod_drifts(lines: list[dict[str, Any]], times: list[float]) -> list[float]:
    """When the stand-in node saw each tick pod, after its fire time (the Job's name carries it)."""
    wanted = set(times)
    return [
        line["seen"] - t for line in lines if (t := tick.scheduled_time(line["job"]).timestamp()) in wanted
    ]


async def until(offset: float, when: float) -> None:
    await asyncio.sleep(max(when - (time.monotonic() + offset), 0.0))


def settle(path: Path, kind: str, due: set[tuple[str, str]], times: list[float], offset: float) -> Fires:
    """The fires once every due one was seen, or SETTLE seconds after the last fire time."""
    while (found := fires(read_lines(path), kind, due, times)).missed and (
        time.monotonic() + offset < times[-1] + SETTLE
    ):
        time.sleep(2.0)
    return found
