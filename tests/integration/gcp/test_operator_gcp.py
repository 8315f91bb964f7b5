"""The operator's Google Cloud backends on a real API server, against the local gRPC fakes.

A control plane and an operator of this module's own: the session operator has no Cloud Scheduler
settings and must not act on these Agents. Runs are played by starting the workspace runtime as a
process with the pod's own env and inputs, then writing its exit code and termination message
through pods/status, as a kubelet would.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore, scheduler_v1
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from agentry_common.constants import FINALIZER
from agentry_common.naming import cronjob_name, job_name
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from agentry_testing.gcp_fakes import GcpFakes
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client
from tests.integration.api.server import api_settings, start_api
from tests.integration.workspace.harness import PodRun, run_pod

pytestmark = pytest.mark.integration

PROJECT, LOCATION = "agentry-test", "europe-west1"
TARGET = "https://agentry.example.com"
INVOKER = "agentry-scheduler@agentry-test.iam.gserviceaccount.com"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
PAUSED, ENABLED = scheduler_v1.Job.State.PAUSED, scheduler_v1.Job.State.ENABLED


@pytest.fixture(scope="module")
def fakes() -> Iterator[GcpFakes]:
    with GcpFakes() as f:
        yield f


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("gcp-kube")) as plane:
        yield plane


@pytest.fixture(scope="module")
def gcp_operator(
    plane: ControlPlane, fakes: GcpFakes, llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("gcp-operator")
    policy = work / "policy.json"  # as the chart renders it when operator.cloudScheduler is set
    policy.write_text(json.dumps({"allowedScheduleBackends": ["CronJob", "CloudScheduler"]}))
    op = start_operator(
        plane,
        work,
        AGENTRY_POLICY_FILE=str(policy),
        AGENTRY_CLOUD_SCHEDULER_PROJECT=PROJECT,
        AGENTRY_CLOUD_SCHEDULER_LOCATION=LOCATION,
        AGENTRY_CLOUD_SCHEDULER_TARGET_URL=TARGET,
        AGENTRY_CLOUD_SCHEDULER_SERVICE_ACCOUNT=INVOKER,
        AGENTRY_CLOUD_SCHEDULER_ENDPOINT=fakes.address,
        AGENTRY_CLOUD_SCHEDULER_TIMEOUT_SECONDS="3",
        AGENTRY_CLOUD_SCHEDULER_RETRY_SECONDS="1",
        AGENTRY_ANTHROPIC_BASE_URL=llm.url,
    )
    yield op
    op.proc.stop()


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane, "gcp-tests") as c:
        yield c


@pytest.fixture
def ns(client: Client, gcp_operator: OperatorProcess) -> str:
    return make_namespace(client, "gcp")


def make_agent(client: Client, ns: str, name: str = "weekly", **spec: Any) -> Any:
    body = {"instructions": "Summarise the week.", "model": {"name": "claude-sonnet-4-6"}, **spec}
    return client.create(Agent.from_dict({"metadata": {"name": name, "namespace": ns}, "spec": body}))


def agent_status(client: Client, ns: str, name: str = "weekly") -> dict[str, Any]:
    return dict(client.get(Agent, name, namespace=ns).status or {})


def ready(st: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})


def patch_schedule(client: Client, ns: str, name: str, **schedule: Any) -> None:
    client.patch(Agent, name, {"spec": {"schedule": schedule}}, namespace=ns, patch_type=PatchType.MERGE)


def cloud_job(fakes: GcpFakes, name: str) -> scheduler_v1.Job | None:
    with fakes.scheduler.lock:
        return fakes.scheduler.jobs.get(name)


def test_scheduler_job_follows_the_agent(client: Client, fakes: GcpFakes, ns: str) -> None:
    agent = make_agent(
        client, ns, schedule={"cron": "0 8 * * 1", "timeZone": "Asia/Seoul", "backend": "CloudScheduler"}
    )
    st = eventually(
        lambda: (s := agent_status(client, ns)).get("scheduleRef") and ready(s).get("status") == "True" and s
    )
    name = st["scheduleRef"]
    assert name.startswith(f"{PARENT}/jobs/agentry-{ns}-weekly-")
    assert st["nextRunTime"].endswith("Z") and ready(st)["reason"] == "Reconciled"
    assert FINALIZER in (client.get(Agent, "weekly", namespace=ns).metadata.finalizers or [])

    job = cloud_job(fakes, name)
    assert job is not None and job.state == ENABLED
    assert (job.schedule, job.time_zone) == ("0 8 * * 1", "Asia/Seoul")
    target = job.http_target
    assert target.uri == f"{TARGET}/api/agents/{ns}/weekly/runs"
    assert target.http_method == scheduler_v1.HttpMethod.POST
    assert json.loads(target.body) == {"trigger": "Schedule"}
    assert dict(target.headers) == {"Content-Type": "application/json"}
    assert (target.oidc_token.service_account_email, target.oidc_token.audience) == (INVOKER, TARGET)
    assert agent.metadata.uid in job.description
    # No CronJob for this backend.
    with pytest.raises(ApiError):
        client.get(CronJob, cronjob_name("weekly", agent.metadata.uid), namespace=ns)

    # A new cron (a macro: Cloud Scheduler takes unix-cron only) updates the job in place.
    patch_schedule(client, ns, "weekly", cron="@daily")
    eventually(lambda: (j := cloud_job(fakes, name)) is not None and j.schedule == "0 0 * * *", what="update")
    updates = [r for r in fakes.scheduler.calls("UpdateJob") if r.job.name == name]
    assert list(updates[-1].update_mask.paths) == ["schedule"]

    # suspend pauses it, and the Agent stops announcing a next run; unsuspend resumes it.
    patch_schedule(client, ns, "weekly", suspend=True)
    eventually(lambda: (j := cloud_job(fakes, name)) is not None and j.state == PAUSED, what="paused")
    eventually(lambda: agent_status(client, ns).get("nextRunTime") is None, what="no next run while paused")
    patch_schedule(client, ns, "weekly", suspend=False)
    eventually(lambda: (j := cloud_job(fakes, name)) is not None and j.state == ENABLED, what="resumed")

    # Deleting the Agent deletes the job first, then the finalizer lets the Agent go.
    client.delete(Agent, "weekly", namespace=ns)
    eventually(lambda: cloud_job(fakes, name) is None, what="job deleted")

    def agent_gone() -> bool:
        try:
            client.get(Agent, "weekly", namespace=ns)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    eventually(agent_gone, what="agent released by the finalizer")


def test_moving_to_cronjob_deletes_the_cloud_job_and_the_finalizer(
    client: Client, fakes: GcpFakes, ns: str
) -> None:
    agent = make_agent(client, ns, schedule={"cron": "*/10 * * * *", "backend": "CloudScheduler"})
    name = eventually(lambda: agent_status(client, ns).get("scheduleRef"), what="job recorded")
    eventually(lambda: cloud_job(fakes, name) is not None, what="job created")

    patch_schedule(client, ns, "weekly", backend="CronJob")
    cron = cronjob_name("weekly", agent.metadata.uid)
    eventually(lambda: client.get(CronJob, cron, namespace=ns), what="CronJob")
    eventually(lambda: cloud_job(fakes, name) is None, what="cloud job deleted")
    eventually(lambda: agent_status(client, ns).get("scheduleRef") == f"CronJob/{cron}", what="ref moved")
    eventually(
        lambda: FINALIZER not in (client.get(Agent, "weekly", namespace=ns).metadata.finalizers or []),
        what="finalizer removed",
    )


def test_refused_api_call_shows_on_ready_and_is_retried(client: Client, fakes: GcpFakes, ns: str) -> None:
    import grpc  # type: ignore[import-untyped]

    fakes.scheduler.fail_next(
        "CreateJob", grpc.StatusCode.PERMISSION_DENIED, "caller lacks cloudscheduler.jobs.create"
    )
    make_agent(client, ns, "denied", schedule={"cron": "0 * * * *", "backend": "CloudScheduler"})
    failed = eventually(
        lambda: ready(s := agent_status(client, ns, "denied")).get("reason") == "CloudSchedulerError" and s,
        what="Ready=False CloudSchedulerError",
    )
    assert ready(failed)["status"] == "False"
    assert (
        "PermissionDenied" in ready(failed)["message"]
        and "cloudscheduler.jobs.create" in ready(failed)["message"]
    )
    assert failed["scheduleRef"].startswith(f"{PARENT}/jobs/agentry-{ns}-denied-")  # recorded before the call
    # The next attempt (AGENTRY_CLOUD_SCHEDULER_RETRY_SECONDS later) succeeds.
    eventually(lambda: ready(agent_status(client, ns, "denied")).get("status") == "True", what="recovered")
    assert cloud_job(fakes, failed["scheduleRef"]) is not None


# --- Secret Manager through the operator -------------------------------------------------------


def run_pod_locally(pod: Pod, root: Path, fakes: GcpFakes) -> PodRun:
    """The pod's container as a process: its env and its /etc/agentry files, paths made local."""
    annotations = pod.metadata.annotations or {}
    config_dir = root / "etc-agentry"
    config_dir.mkdir(parents=True)
    (config_dir / "agent.json").write_text(annotations["agentry.dev/agent.json"])
    (config_dir / "input.txt").write_text(annotations.get("agentry.dev/input.txt", ""))
    container = pod.spec.containers[0]
    env = {e.name: e.value for e in container.env or [] if e.value is not None}
    env.update(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "AGENTRY_CONFIG_DIR": str(config_dir),
            "AGENTRY_WORKSPACE": str(root / "workspace"),
            "AGENTRY_RESULT_FILE": str(root / "termination-log"),
            # Test only: the pod would reach secretmanager.googleapis.com with Workload Identity.
            "AGENTRY_SECRET_MANAGER_ENDPOINT": fakes.address,
            "AGENTRY_SECRET_MANAGER_TIMEOUT_SECONDS": "5",
        }
    )
    (root / "workspace").mkdir()
    return run_pod(root, env)


def execution_pod(client: Client, ns: str, name: str) -> Pod:
    ex = eventually(lambda: client.get(Execution, name, namespace=ns), what="execution")
    job = job_name(name, ex.metadata.uid)
    eventually(lambda: client.get(Job, job, namespace=ns), what="the Job")
    pods = eventually(
        lambda: list(client.list(Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": job})),
        what="the Job's pod",
    )
    return pods[-1]


def wait_phase(client: Client, ns: str, name: str, phase: str) -> dict[str, Any]:
    return eventually(  # type: ignore[no-any-return]
        lambda: (
            (s := dict(client.get(Execution, name, namespace=ns).status or {})).get("phase") == phase and s
        ),
        timeout=60,
        what=f"execution {name} {phase}",
    )


def start_run(client: Client, ns: str, agent: str, run: str) -> None:
    client.create(
        Execution.from_dict(
            {"metadata": {"name": run, "namespace": ns}, "spec": {"agentRef": {"name": agent}}}
        )
    )


def test_missing_secret_fails_the_execution_with_a_clear_reason(
    client: Client, fakes: GcpFakes, ns: str, tmp_path: Path
) -> None:
    missing = f"projects/{PROJECT}/secrets/never-created-{ns}"
    make_agent(client, ns, "keyless", secrets=[{"env": "ANTHROPIC_API_KEY", "secretManager": missing}])
    start_run(client, ns, "keyless", "run-1")
    pod = execution_pod(client, ns, "run-1")
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert json.loads(env["AGENTRY_SECRET_MANAGER_REFS"]) == {"ANTHROPIC_API_KEY": missing}

    run = run_pod_locally(pod, tmp_path, fakes)
    assert run.code == 2, run.explain()
    play_kubelet(client, pod, "Failed", run.code, run.result_text)
    st = wait_phase(client, ns, "run-1", "Failed")
    assert st["reason"] == "ConfigurationError" and "exit code 2" in st["message"]
    summary = st["result"]["summary"]
    assert (
        f"{missing}/versions/latest" in summary
        and "does not exist" in summary
        and "ANTHROPIC_API_KEY" in summary
    )
    # Final: the Job failed at once (podFailurePolicy), no second pod.
    assert len(list(client.list(Pod, namespace=ns))) == 1


def test_canary_secret_never_leaves_the_run(
    plane: ControlPlane,
    client: Client,
    fakes: GcpFakes,
    llm: ScriptedLLM,
    gcp_operator: OperatorProcess,
    ns: str,
    tmp_path: Path,
    firestore_project: str,
) -> None:
    # The API mirrors what happens into Firestore; it runs too, so Firestore is searched as well.
    api = start_api(api_settings(firestore_project, ns, str(plane.kubeconfig)))
    try:
        _canary_run(plane, client, fakes, llm, gcp_operator, ns, tmp_path, firestore_project)
    finally:
        api.stop()


def _firestore_dump(project: str) -> str:
    db = firestore.Client(project=project)
    return json.dumps({c.id: {d.id: d.to_dict() for d in c.stream()} for c in db.collections()}, default=str)


def _canary_run(
    plane: ControlPlane,
    client: Client,
    fakes: GcpFakes,
    llm: ScriptedLLM,
    gcp_operator: OperatorProcess,
    ns: str,
    tmp_path: Path,
    project: str,
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    key = f"sk-ant-canary-key-{uuid.uuid4().hex}"
    key_ref = fakes.secrets.add(f"projects/{PROJECT}/secrets/llm-{ns}", key)
    canary_ref = fakes.secrets.add(f"projects/{PROJECT}/secrets/canary-{ns}", canary)
    make_agent(
        client,
        ns,
        "canary",
        tools=["shell"],
        secrets=[
            {"env": "ANTHROPIC_API_KEY", "secretManager": key_ref},
            {"env": "CANARY_TOKEN", "secretManager": canary_ref},
        ],
        schedule={"cron": "0 3 * * *", "backend": "CloudScheduler"},
        # Shell with a secret is RED (it waits for a person) unless the Agent trusts its code: this
        # test is about the value never leaving the run, not about the approval.
        approval={"trustCodeWithAccess": True},
    )
    llm.script(
        [
            {"tool_use": {"name": "shell", "input": {"command": 'echo "the token is $CANARY_TOKEN"'}}},
            {"text": f"Done. For the record, the token is {canary}."},
        ]
    )
    start_run(client, ns, "canary", "run-1")
    pod = execution_pod(client, ns, "run-1")
    play_kubelet(client, pod, "Running")
    run = run_pod_locally(pod, tmp_path, fakes)
    assert run.code == 0, run.explain()
    play_kubelet(client, pod, "Succeeded", 0, run.result_text)
    st = wait_phase(client, ns, "run-1", "Succeeded")
    assert st["result"]["summary"] == "Done. For the record, the token is [REDACTED]."
    # Control: the value really was resolved and used by the run (the model saw the tool output).
    assert any(canary in json.dumps(r.body) for r in llm.requests)

    # Now search everywhere it must not be: every object in the namespace (CRs with their kopf
    # annotations and managedFields, Jobs, Pods, ConfigMaps, Events), cluster-wide Events, the
    # operator's log, and the runtime's events, stderr and result.
    kinds = "agents,executions,jobs,pods,configmaps,cronjobs,events"
    dumps = {
        "namespace objects": plane.kubectl("get", kinds, "-n", ns, "-o", "json").stdout,
        "all events": plane.kubectl("get", "events", "-A", "-o", "json").stdout,
        "operator log": gcp_operator.proc.log.read_text(errors="replace"),
        "runtime events": run.stdout,
        "runtime stderr": run.stderr,
        "termination message": run.result_text,
    }
    with fakes.scheduler.lock:
        dumps["cloud scheduler jobs"] = repr(list(fakes.scheduler.jobs.values()))
    mirrored = eventually(
        lambda: '"Succeeded"' in (text := _firestore_dump(project)) and "run-1" in text and text,
        timeout=60,
        what="the API to mirror the finished run into Firestore",
    )
    dumps["firestore"] = mirrored
    assert "operator.agentry.dev/" in dumps["namespace objects"]  # kopf's annotations were searched too
    for where, text in dumps.items():
        assert canary not in text, f"the canary leaked into {where}"
        assert key not in text, f"the provider key leaked into {where}"
