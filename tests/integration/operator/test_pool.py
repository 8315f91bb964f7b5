"""The warm pool against a real API server (operator/agentry_operator/pool/): the operator keeps a warm
Job, a run claims its pod, and the claim survives a restart; a pooled run keeps every rule of a run of
its own (the gate before any claim, cancellation, the deadline) and says why it starts as a Job when
it does. There is no kubelet: the test writes the pods' status, and a real runtime process in warm
mode on this host stands in for the pod's process (the pod's address is 127.0.0.1, its claim port
one of this host's). The Job controller is the control plane's own."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod, PodStatus, Secret
from lightkube.types import PatchType

from agentry_common import constants as c
from agentry_common import pool as p
from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.procs import port_in_use
from agentry_operator.kube import Agent, Execution
from agentry_operator.pool.builders import secret_values
from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.operator import OperatorProcess, own_control_plane
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

R = TypeVar("R", Job, Secret)

AGENT = {"instructions": "Say hello.", "model": {"name": "claude-sonnet-4-5"}, "timeoutSeconds": 60}
# The operator's policy admits Anthropic's models only: an Agent of another provider is refused by the
# run gate, which comes before any claim.
POLICY = {"allowedModels": ["anthropic/*"]}
OTHERS = {
    "bigger": {**AGENT, "resources": {"requests": {"memory": "300Mi"}}},  # a profile no pool serves
    "brief": {**AGENT, "timeoutSeconds": 10},
    "elsewhere": {**AGENT, "model": {"provider": "openai", "name": "gpt-4o"}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("pool-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def ns(plane: ControlPlane) -> str:
    with plane_client(plane) as client:
        ns = make_namespace(client, "pool")
        for name, spec in {"hello": AGENT, **OTHERS}.items():
            client.create(Agent.from_dict({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
        return ns


@pytest.fixture(scope="module")
def port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def op(
    plane: ControlPlane, ns: str, port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    pools = [{"name": "default", "namespaces": [ns], "min": 1, "max": 1}]
    workdir = tmp_path_factory.mktemp("pool-operator")
    (workdir / "policy.json").write_text(json.dumps(POLICY))
    env = {
        "AGENTRY_WEBHOOK_ENABLED": "false",
        "AGENTRY_POLICY_FILE": str(workdir / "policy.json"),
        "AGENTRY_POOLS": json.dumps(pools),
        "AGENTRY_POOL_CLAIM_PORT": str(port),
    }
    proc = OperatorProcess(plane, workdir, env, scope=("--namespace", ns))
    yield proc.launch()
    proc.proc.stop()


def _warm_job(client: Client, ns: str, claimed: bool = False) -> Job:
    """The pool's one warm Job (unclaimed), once its pod exists."""

    def found() -> Job | None:
        for job in client.list(Job, namespace=ns, labels={p.LABEL_POOL: "default"}):
            annotations = job.metadata.annotations or {} if job.metadata else {}
            if bool(annotations.get(c.ANNOTATION_EXECUTION)) == claimed and _pod(client, ns, job):
                return job
        return None

    job: Job = eventually(found, what="a warm Job with its pod")
    return job


def _pod(client: Client, ns: str, job: Job) -> Pod | None:
    assert job.metadata is not None
    pods = list(client.list(Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": job.metadata.name}))
    return pods[0] if pods else None


class WarmProcess:
    """`python -m agentry_workspace --warm` on this host, with the warm Job's key, as its pod would run."""

    def __init__(self, client: Client, ns: str, job: Job, port: int, workdir: Path) -> None:
        assert job.metadata is not None and job.metadata.name is not None
        secret = client.get(Secret, p.claim_secret_name(job.metadata.name), namespace=ns)
        self.dir = workdir
        for sub in ("config", "ws"):
            (workdir / sub).mkdir()
        (workdir / "key").write_text(secret_values({"data": secret.data or {}})[p.KEY_FILE])
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(workdir / "ws"),
            p.ENV_CLAIM_PORT: str(port),
            p.ENV_CLAIM_KEY_FILE: str(workdir / "key"),
            "AGENTRY_CONFIG_DIR": str(workdir / "config"),
            "AGENTRY_WORKSPACE": str(workdir / "ws"),
            "AGENTRY_RESULT_FILE": str(workdir / "result.json"),
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "agentry_workspace", p.WARM_FLAG], env=env)
        # Running once it listens: under load its start can outlast the claim's own retries (then the
        # run rightly starts as a Job, PoolEmpty, and the test would not test the claim).
        eventually(lambda: port_in_use(port), 60, "the warm process listening on its claim port")
        pod = _pod(client, ns, job)
        assert pod is not None and pod.metadata is not None and pod.metadata.name is not None
        play_kubelet(client, pod, "Running")
        ip = {"status": {"podIP": "127.0.0.1"}}
        client.patch(PodStatus, pod.metadata.name, ip, namespace=ns, patch_type=PatchType.MERGE)

    def result(self) -> dict[str, Any]:
        self.proc.wait(timeout=60)
        return dict(json.loads((self.dir / "result.json").read_text()))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@contextmanager
def a_warm_pod(
    plane: ControlPlane, ns: str, port: int, tmp_path: Path, op: OperatorProcess
) -> Iterator[tuple[Client, Job, WarmProcess]]:
    """A client, the pool's warm Job (named) and the process serving its claim port, once the operator
    counts its pod ready (a run created before that starts as a Job: PoolEmpty); stopped after."""
    with plane_client(plane) as client:
        job = _warm_job(client, ns)
        assert job.metadata is not None and job.metadata.name is not None
        warm = WarmProcess(client, ns, job, port, tmp_path)
        ready = f'agentry_pool_ready_pods{{namespace="{ns}",pool="default"}} 1.0'
        eventually(lambda: ready in op.metrics(), what="the operator counting the warm pod ready")
        try:
            yield client, job, warm
        finally:
            warm.stop()


def _run(client: Client, ns: str, name: str, agent: str = "hello") -> None:
    body = {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"agentRef": {"name": agent}, "input": "hi"},
    }
    client.create(Execution.from_dict(body))


def _status(client: Client, ns: str, name: str) -> dict[str, Any]:
    status = client.get(Execution, name, namespace=ns).status
    return dict(status) if isinstance(status, dict) else {}


def _pooled(status: dict[str, Any]) -> dict[str, Any]:
    return next((cond for cond in status.get("conditions") or [] if cond["type"] == "Pooled"), {})


def _claimed(client: Client, ns: str, name: str) -> dict[str, Any]:
    try:
        status: dict[str, Any] = eventually(
            lambda: (
                _pooled(_status(client, ns, name)).get("reason") == "Claimed" and _status(client, ns, name)
            ),
            what=f"{name} claimed the warm pod",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its status: {_status(client, ns, name)}") from None
    return status


def _ended(client: Client, ns: str, name: str, phase: str) -> dict[str, Any]:
    status: dict[str, Any] = eventually(
        lambda: _status(client, ns, name).get("phase") == phase and _status(client, ns, name),
        what=f"{name} {phase}",
    )
    return status


def test_a_run_with_no_warm_pod_ready_starts_as_a_job_and_says_so(
    plane: ControlPlane, ns: str, op: OperatorProcess
) -> None:
    with plane_client(plane) as client:
        _warm_job(client, ns)  # its pod is not running (no kubelet wrote it): nothing is ready
        _run(client, ns, "cold")
        status = eventually(
            lambda: _status(client, ns, "cold").get("jobName") and _status(client, ns, "cold")
        )
        assert _pooled(status)["status"] == "False" and _pooled(status)["reason"] == "PoolEmpty"
        assert not client.get(Job, status["jobName"], namespace=ns).metadata.labels.get(p.LABEL_POOL)  # type: ignore[union-attr]


def test_a_run_claims_a_warm_pod_which_runs_it_and_reports(
    plane: ControlPlane, ns: str, port: int, op: OperatorProcess, tmp_path: Path
) -> None:
    with a_warm_pod(plane, ns, port, tmp_path, op) as (client, job, warm):
        assert job.metadata is not None and job.metadata.name is not None
        _run(client, ns, "warm")
        status = _claimed(client, ns, "warm")
        assert status["jobName"] == job.metadata.name
        taken = client.get(Job, job.metadata.name, namespace=ns)
        assert taken.metadata is not None and taken.metadata.annotations is not None
        assert taken.metadata.annotations[c.ANNOTATION_EXECUTION] == "warm"
        assert taken.metadata.ownerReferences and taken.metadata.ownerReferences[0].name == "warm"
        pod = _pod(client, ns, taken)
        assert pod is not None and pod.metadata is not None and pod.metadata.labels is not None
        assert pod.metadata.labels[c.LABEL_EXECUTION] == "warm"
        # The pod's process got the run's inputs and ran it (no provider key here: it says so).
        report = warm.result()
        assert (
            json.loads((tmp_path / "config" / c.AGENT_FILE).read_text())["spec"]["instructions"]
            == "Say hello."
        )
        assert (tmp_path / "config" / c.INPUT_FILE).read_text() == "hi"
        # Its report reaches the Execution as any run's does (the test writes what the kubelet would).
        play_kubelet(client, pod, "Failed", exit_code=warm.proc.returncode, message=report)
        end = eventually(
            lambda: _status(client, ns, "warm").get("phase") == "Failed" and _status(client, ns, "warm"),
            what="the pooled run's end",
        )
        assert "ANTHROPIC_API_KEY" in end["message"]
        # The pool refills.
        _warm_job(client, ns)


def test_a_claim_recorded_before_a_restart_is_finished_after_it(
    plane: ControlPlane, ns: str, port: int, op: OperatorProcess, tmp_path: Path
) -> None:
    with a_warm_pod(plane, ns, port, tmp_path, op) as (client, job, warm):
        assert job.metadata is not None and job.metadata.name is not None
        op.proc.stop()
        # What an operator that crashed right after step 1 leaves: the claim in the status only.
        _run(client, ns, "restarted")
        recorded = {
            "phase": "Pending",
            "jobName": job.metadata.name,
            "correlationId": "corr-restart",
            "conditions": [
                {
                    "type": "Pooled",
                    "status": "Unknown",
                    "reason": "Claiming",
                    "message": "recorded",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
        client.patch(
            Execution.Status, "restarted", {"status": recorded}, namespace=ns, patch_type=PatchType.MERGE
        )
        op.launch()
        _claimed(client, ns, "restarted")  # the recorded claim finished
        taken = client.get(Job, job.metadata.name, namespace=ns)
        assert taken.metadata is not None and taken.metadata.annotations is not None
        assert taken.metadata.annotations[c.ANNOTATION_EXECUTION] == "restarted"
        warm.result()
        assert (tmp_path / "config" / c.INPUT_FILE).read_text() == "hi"
        # One run per Execution: no Job of its own was made beside the claimed one.
        mine = [j for j in client.list(Job, namespace=ns, labels={c.LABEL_EXECUTION: "restarted"})]
        assert [j.metadata.name for j in mine if j.metadata] == [job.metadata.name]


def test_a_claim_delivered_before_a_restart_whose_pod_ended_is_the_runs_end(
    plane: ControlPlane, ns: str, port: int, op: OperatorProcess, tmp_path: Path
) -> None:
    """An operator that crashed after delivering the claim and before writing it done: the pod ran the
    run and ended meanwhile. Its end is the run's, read once; the run is never started again."""
    with a_warm_pod(plane, ns, port, tmp_path, op) as (client, job, warm):
        assert job.metadata is not None and job.metadata.name is not None
        _run(client, ns, "delivered")
        claimed = _claimed(client, ns, "delivered")
        op.proc.stop()
        pooled = {**_pooled(claimed), "status": "Unknown", "reason": "Claiming"}
        others = [cond for cond in claimed.get("conditions") or [] if cond["type"] != "Pooled"]
        undone = {"status": {"conditions": [*others, pooled]}}
        client.patch(Execution.Status, "delivered", undone, namespace=ns, patch_type=PatchType.MERGE)
        pod = _pod(client, ns, job)
        assert pod is not None
        report = warm.result()
        play_kubelet(client, pod, "Failed", exit_code=warm.proc.returncode, message=report)
        op.launch()
        end = _ended(client, ns, "delivered", "Failed")
        assert end["jobName"] == job.metadata.name and "ANTHROPIC_API_KEY" in end["message"], end
        assert _pooled(end)["reason"] == "Claimed", end
        mine = [j for j in client.list(Job, namespace=ns, labels={c.LABEL_EXECUTION: "delivered"})]
        assert [j.metadata.name for j in mine if j.metadata] == [job.metadata.name]


def test_warm_jobs_of_a_pool_no_longer_configured_are_deleted(
    plane: ControlPlane, ns: str, op: OperatorProcess
) -> None:
    with plane_client(plane) as client:
        labels = {c.LABEL_MANAGED_BY: c.MANAGED_BY, p.LABEL_POOL: "retired"}
        box = {"name": "agent", "image": "agentry/workspace:test", "command": ["true"]}
        spec = {
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [box]},
            }
        }
        retired = {"metadata": {"name": "pool-retired-1", "namespace": ns, "labels": labels}, "spec": spec}
        client.create(cast(Job, Job.from_dict(retired)))

        def gone() -> bool:
            return "pool-retired-1" not in {
                j.metadata.name for j in client.list(Job, namespace=ns) if j.metadata
            }

        eventually(gone, what="the retired pool's warm Job deleted")
        assert _warm_job(client, ns)  # the configured pool keeps its own


def test_a_warm_job_without_its_claim_secret_gets_one(
    plane: ControlPlane, ns: str, op: OperatorProcess
) -> None:
    """Its creation failed after the Job's (or it went while the operator was away): the pod would wait
    for its volume forever, so the next round of the pool makes it."""
    with plane_client(plane) as client:
        job = _warm_job(client, ns)
        assert job.metadata is not None and job.metadata.name is not None
        secret = p.claim_secret_name(job.metadata.name)
        op.proc.stop()
        client.delete(Secret, secret, namespace=ns)
        op.launch()
        made = eventually(lambda: _or_none(client, Secret, ns, secret), what="the claim Secret made again")
        assert made.metadata is not None and made.metadata.ownerReferences
        assert made.metadata.ownerReferences[0].name == job.metadata.name


def _or_none(client: Client, kind: type[R], ns: str, name: str) -> R | None:
    try:
        return client.get(kind, name, namespace=ns)
    except ApiError:
        return None


def test_a_run_no_pool_serves_starts_as_a_job_of_its_own_and_says_so(
    plane: ControlPlane, ns: str, op: OperatorProcess
) -> None:
    with plane_client(plane) as client:
        _run(client, ns, "big", agent="bigger")
        status = eventually(lambda: _status(client, ns, "big").get("jobName") and _status(client, ns, "big"))
        assert _pooled(status)["status"] == "False" and _pooled(status)["reason"] == "NoPool"
        assert "300Mi" in _pooled(status)["message"]  # the profile it asked for
        own = client.get(Job, status["jobName"], namespace=ns)
        assert own.metadata is not None and not (own.metadata.labels or {}).get(p.LABEL_POOL)


def test_a_run_the_gate_refuses_claims_no_warm_pod(
    plane: ControlPlane, ns: str, port: int, op: OperatorProcess, tmp_path: Path
) -> None:
    with a_warm_pod(plane, ns, port, tmp_path, op) as (client, job, _):
        assert job.metadata is not None and job.metadata.name is not None
        _run(client, ns, "refused", agent="elsewhere")
        status = _ended(client, ns, "refused", "Failed")
        assert status["reason"] == "PolicyViolation" and "openai/gpt-4o" in status["message"]
        assert not status.get("jobName")
        assert not _pooled(status)  # it never reached the pool
        kept = client.get(Job, job.metadata.name, namespace=ns)
        assert kept.metadata is not None and not (kept.metadata.annotations or {}).get(c.ANNOTATION_EXECUTION)
        # The same warm pod serves the next run the gate admits.
        _run(client, ns, "admitted")
        assert _claimed(client, ns, "admitted")["jobName"] == job.metadata.name


def test_a_claimed_run_cancelled_ends_cancelled_and_its_warm_job_goes(
    plane: ControlPlane, ns: str, port: int, op: OperatorProcess, tmp_path: Path
) -> None:
    with a_warm_pod(plane, ns, port, tmp_path, op) as (client, job, _):
        assert job.metadata is not None and job.metadata.name is not None
        _run(client, ns, "cancelled")
        _claimed(client, ns, "cancelled")
        cancel = {"spec": {"cancel": True}}
        client.patch(Execution, "cancelled", cancel, namespace=ns, patch_type=PatchType.MERGE)
        assert _ended(client, ns, "cancelled", "Cancelled")["reason"] == "Cancelled"
        name = job.metadata.name
        eventually(lambda: _or_none(client, Job, ns, name) is None, what="the claimed Job deleted")


def test_a_claimed_runs_deadline_ends_it_as_a_runs_own_job_would(
    plane: ControlPlane, ns: str, port: int, op: OperatorProcess, tmp_path: Path
) -> None:
    """The warm Job waited long before its claim: the run still gets its whole timeoutSeconds from the
    claim, and the Job controller ends it at that deadline (the pod never reports: it hangs)."""
    with a_warm_pod(plane, ns, port, tmp_path, op) as (client, job, _):
        assert job.metadata is not None and job.metadata.name is not None
        _run(client, ns, "slow", agent="brief")
        _claimed(client, ns, "slow")
        taken = client.get(Job, job.metadata.name, namespace=ns)
        assert taken.spec is not None and taken.metadata is not None and taken.status is not None
        assert taken.status.startTime is not None
        waited = (dt.datetime.now(dt.UTC) - taken.status.startTime).total_seconds()
        deadline = taken.spec.activeDeadlineSeconds or 0
        assert deadline - waited >= 10 - 5  # the run's own 10 s, counted from the claim (5 s of slack)
        status = _ended(client, ns, "slow", "Failed")
        assert status["reason"] == "DeadlineExceeded", status
