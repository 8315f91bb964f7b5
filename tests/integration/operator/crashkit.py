"""What the crash and chaos tests share: the runs' own reports and the exact totals they add up
to, a recorder of every terminal status and Job from watches, and a kubelet stand-in that finishes
pods whether the operator is up or not."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx2
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import OnErrorAction, OnErrorResult

from agentry_common import constants as c
from agentry_common.naming import job_name
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import patient, play_kubelet
from tests.fixtures.servers import plane_client

TERMINAL = {"Succeeded", "Failed", "Cancelled", "Skipped"}
KEEP = 4  # historyLimits.succeeded of the pruning scenarios


def index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def report(name: str) -> dict[str, Any]:
    """What the pod of Execution `name` reports: numbers of its own, so a lost or doubled run shows."""
    i = index(name)
    usage = {"inputTokens": 1 + i, "outputTokens": 1000 + 7 * i, "costUSD": str(Decimal(i + 1) / 1000)}
    return {"summary": f"done {name}", "usage": usage}


def expected_totals(names: list[str]) -> dict[str, Any]:
    usages = [report(n)["usage"] for n in names]
    return {
        "executions": len(names),
        "succeeded": len(names),
        "inputTokens": sum(u["inputTokens"] for u in usages),
        "outputTokens": sum(u["outputTokens"] for u in usages),
        "costUSD": sum((Decimal(u["costUSD"]) for u in usages), Decimal(0)),
    }


class Recorder:
    """Every Execution's terminal statuses and every Job's owner, from watches opened before the
    first object exists (a DELETED event carries the pruned Execution's last status)."""

    def __init__(self, plane: ControlPlane, ns: str) -> None:
        self.terminal: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.jobs: dict[str, set[str]] = defaultdict(set)  # owner uid -> Job names
        self.uids: dict[str, str] = {}
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(plane, ns, Execution, self._execution), daemon=True),
            threading.Thread(target=self._watch, args=(plane, ns, Job, self._job), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _watch(self, plane: ControlPlane, ns: str, res: Any, record: Callable[[Any], None]) -> None:
        # server_timeout: the watch is renewed every 2 s (from its last resourceVersion), so the
        # thread notices stop() soon even when nothing happens.
        # A new CRD's watch answers 429 until the API server's cache of it is ready: retried, and
        # resumed from the last resourceVersion seen (no event is lost).
        def retry(exc: Exception, count: int) -> OnErrorResult:
            if self._stop.is_set() or count > 100:
                self.errors.append(exc)
                return OnErrorResult(OnErrorAction.STOP)
            return OnErrorResult(OnErrorAction.RETRY, sleep=0.5)

        with plane_client(plane, "crash-recorder") as client:
            try:
                for _, obj in client.watch(res, namespace=ns, server_timeout=2, on_error=retry):
                    record(obj)
                    if self._stop.is_set():
                        return
            except Exception as exc:  # the control plane stopped after the test
                if not self._stop.is_set():
                    self.errors.append(exc)

    def _execution(self, ex: Any) -> None:
        self.uids[ex.metadata.name] = ex.metadata.uid
        status = ex.status or {}
        if status.get("phase") in TERMINAL:
            self.terminal[ex.metadata.name].append(status)

    def _job(self, job: Any) -> None:
        for owner in job.metadata.ownerReferences or []:
            self.jobs[owner.uid].add(job.metadata.name)

    def stop(self) -> None:
        self._stop.set()


class Kubelet:
    """Finishes every pod of the namespace as a kubelet would, after a random delay (sometimes
    Running first), whether the operator is up or not; its report is the Execution's own."""

    def __init__(
        self, plane: ControlPlane, ns: str, rng: random.Random, run_seconds: tuple[float, float] = (0, 2.5)
    ) -> None:
        self.plane, self.ns, self.rng, self.run_seconds = plane, ns, rng, run_seconds
        self.finished: set[str] = set()  # Executions whose pod reported
        self.retried = 0  # steps that failed and were tried again
        self._due: dict[str, float] = {}
        self._running: set[str] = set()
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # A step that fails is recorded and the next one goes on: a kubelet that stopped would leave
        # every later pod unfinished, and the test would time out without saying why.
        with plane_client(self.plane, "crash-kubelet") as self.client:
            while not self._stop.is_set():
                try:
                    self._step()
                except (httpx2.TransportError, ApiError) as exc:
                    if not _transient(exc):
                        self.errors.append(exc)
                    self.retried += 1
                except Exception as exc:
                    self.errors.append(exc)
                time.sleep(0.1)

    def _step(self) -> None:
        now = time.monotonic()
        for pod in self.client.list(Pod, namespace=self.ns, fields={"status.phase": "Pending"}):
            assert pod.metadata is not None and pod.metadata.name is not None
            execution = (pod.metadata.annotations or {})[c.ANNOTATION_EXECUTION]
            due = self._due.setdefault(pod.metadata.name, now + self.rng.uniform(*self.run_seconds))
            if due > now:
                if pod.metadata.name not in self._running and self.rng.random() < 0.3:
                    play_kubelet(self.client, pod, "Running")
                    self._running.add(pod.metadata.name)
                continue
            play_kubelet(self.client, pod, "Succeeded", 0, report(execution))
            self.finished.add(execution)
        for pod in self.client.list(Pod, namespace=self.ns, fields={"status.phase": "Running"}):
            assert pod.metadata is not None and pod.metadata.name is not None
            if self._due.get(pod.metadata.name, now) <= now:
                execution = (pod.metadata.annotations or {})[c.ANNOTATION_EXECUTION]
                play_kubelet(self.client, pod, "Succeeded", 0, report(execution))
                self.finished.add(execution)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _transient(exc: Exception) -> bool:
    """A step's failure the next step gets past: a connection that failed or timed out under load, a
    pod gone meanwhile (its Job pruned or replaced), a conflict or an overloaded API server."""
    return not isinstance(exc, ApiError) or exc.status.code in (404, 409, 429, 500, 503, 504)


def wait_for(fn: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str) -> Any:
    """Poll fn until done(value); on timeout, fail showing the last value (no timing asserted)."""
    deadline = time.monotonic() + patient(timeout)
    value: Any = None
    while time.monotonic() < deadline:
        value = fn()
        if done(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {value!r}")


def admitted(client: Client, obj: Any) -> bool:
    """Create `obj`; False while the API server cannot reach the webhook (it fails closed for Agents,
    and its configuration may still name the previous operator's port for a moment)."""
    try:
        client.create(obj)
    except ApiError as exc:
        if "failed calling webhook" in str(exc):
            return False
        raise
    return True


def agent_totals(client: Client, ns: str) -> dict[str, Any]:
    totals = dict((client.get(Agent, "a", namespace=ns).status or {}).get("totals") or {})
    totals["costUSD"] = Decimal(str(totals.get("costUSD", "0")))
    return {k: totals.get(k) for k in ("executions", "succeeded", "inputTokens", "outputTokens", "costUSD")}


def crash_agent(ns: str, prune: bool) -> Any:
    limits = {"succeeded": KEEP, "failed": KEEP} if prune else {"succeeded": 100, "failed": 100}
    spec = {"instructions": "x", "model": {"name": "m"}, "historyLimits": limits}
    return Agent.from_dict({"metadata": {"name": "a", "namespace": ns}, "spec": spec})


def create_executions(client: Client, ns: str, names: list[str], pause: random.Random, gap: float) -> None:
    """Create the Executions one by one, a random pause of up to `gap` seconds between them."""
    for name in names:
        body = {"metadata": {"name": name, "namespace": ns}, "spec": {"agentRef": {"name": "a"}}}
        _create_retrying(client, Execution.from_dict(body))
        time.sleep(pause.uniform(0, gap))


# A replica killed while it answers an admission review fails that one write (its connection to the
# API server closes under the review); a client writes again, as kubectl users do.
_WEBHOOK_GONE = ("failed calling webhook", "Connector is closed", "ClientConnectionError")


def _create_retrying(client: Client, obj: Any, attempts: int = 5) -> None:
    """Create `obj`, again after a refusal of a replica's webhook, or after the client timed out:
    kopf's managed webhook configuration lets the API server wait 30 s for a review, the client 10 s.
    A timed-out create may have been applied: a later attempt that finds the object is done (this
    test's names are its own)."""
    unsure = False  # an earlier attempt may have been applied
    for attempt in range(attempts):
        try:
            client.create(obj)
            return
        except ApiError as exc:
            if unsure and exc.status.code == 409:
                return
            if attempt == attempts - 1 or not any(s in str(exc) for s in _WEBHOOK_GONE):
                raise
        except httpx2.TimeoutException:
            if attempt == attempts - 1:
                raise
            unsure = True
        time.sleep(1)


def check_outcome(
    client: Client,
    ns: str,
    names: list[str],
    recorder: Recorder,
    kubelet: Kubelet,
    prune: bool,
    settle: float,
) -> None:
    """Every Execution terminal within `settle` s with its own result and usage in every terminal
    status ever written, exactly one Job each, and the Agent's totals exact (pruned or not)."""

    def unfinished() -> list[str]:
        return [name for name in names if name not in recorder.terminal]

    try:
        wait_for(unfinished, lambda left: not left, settle, "every run terminal")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; kubelet errors {kubelet.errors}, retried {kubelet.retried}") from None
    for name in names:
        want_report = report(name)
        for status in recorder.terminal[name]:
            seen = (name, *(status.get(k) for k in ("phase", "reason", "result", "usage")))
            assert status["phase"] == "Succeeded", seen
            assert (status.get("result") or {}).get("summary") == want_report["summary"], seen
            usage = status.get("usage") or {}
            assert {k: usage.get(k) for k in want_report["usage"]} == want_report["usage"], seen
    for name in names:
        uid = recorder.uids[name]
        assert recorder.jobs[uid] == {job_name(name, uid)}, (name, recorder.jobs[uid])
    if prune:
        wait_for(
            lambda: len(list(client.list(Execution, namespace=ns))),
            lambda live: live <= KEEP,
            120,
            f"history pruned to {KEEP}",
        )
    want = expected_totals(names)
    totals = wait_for(lambda: agent_totals(client, ns), lambda t: t == want, 120, f"totals {want}")
    assert totals == want
    live = {e.metadata.name for e in client.list(Execution, namespace=ns)}
    assert len(live) == (KEEP if prune else len(names))
    assert not kubelet.errors and not recorder.errors, (kubelet.errors, recorder.errors)
