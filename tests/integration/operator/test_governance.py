"""Governance on a real API server: the operator asks a real LLM gateway's admission before each run
and gives the run a per-Execution token instead of provider keys (docs/governance.md (a), (b)).

Own control plane (no other operator may act on these objects), one governed operator for the module,
and per test a real gateway (uvicorn, in-process ledger with a clock the test can move) on the one
address the operator knows: stopping it is "gateway down". That address is held for the whole module
(see ReservedPort): a port only picked at import was taken by another server before these tests ran.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from lightkube import ApiError, Client
from lightkube.models.core_v1 import ResourceQuotaSpec, ResourceQuotaStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ResourceQuota, Secret
from lightkube.types import PatchType

from agentry_common.constants import SERVER_KEEP_ALIVE_SECONDS
from agentry_common.governance import Scope
from agentry_common.naming import job_name, token_secret_name
from agentry_common.tokens import Keyring, verify
from agentry_gateway.app import create_app
from agentry_gateway.budgets import Amount, counter_id
from agentry_gateway.config import GatewayConfig
from agentry_gateway.ledger import MemoryLedger, Subjects
from agentry_gateway.settings import Settings
from agentry_localcluster import localhttp
from agentry_localcluster.kube import ControlPlane
from agentry_operator.builders.governance import deleted_with_live_token
from agentry_operator.handlers.admission import Governance, execution_deleted
from agentry_operator.handlers.state import State
from agentry_operator.kube import Agent, Execution
from agentry_operator.settings import Settings as OperatorSettings
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import APPROVAL_REPORT, eventually, job_pod, patient, play_kubelet
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

KEY = "k" * 40
KEYRING = Keyring.single(KEY, "test")
USER = "u-1f3a"
MODEL = "claude-sonnet-4-6"
USERS_100 = [{"name": "users", "scope": "user", "limits": [{"window": "5h", "messages": 100}]}]


class ReservedPort:
    """A loopback port kept for the module: a bound socket that never listens, so while no gateway
    runs connections are refused (gateway down) and no other server can bind it. Gateways listen on
    the same port beside it through SO_REUSEPORT."""

    def __init__(self) -> None:
        self.hold = self._socket()
        self.hold.bind(("127.0.0.1", 0))
        self.port = int(self.hold.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock

    def listener(self) -> socket.socket:
        sock = self._socket()
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        return sock


class Gateway:
    """The real gateway app on the reserved port (its own thread and loop); counts admission calls."""

    def __init__(
        self, address: ReservedPort, budgets: list[dict[str, Any]] | None = None, **extra: Any
    ) -> None:
        self.url = address.url
        self.sock = address.listener()
        self.config = GatewayConfig.model_validate({"budgets": budgets or [], "bucketSeconds": 60, **extra})
        self.offset = 0.0  # seconds added to the ledger's clock: "later"
        self.ledger = MemoryLedger(
            self.config.budgets,
            self.config.calendar,
            self.config.thresholds,
            self.config.keep_seconds,
            clock=lambda: time.time() + self.offset,
            settle_delay=0.01,
        )
        settings = Settings.model_validate({"ledger": "memory"})
        self.app = create_app(settings, config=self.config, keyring=KEYRING, ledger=self.ledger)
        self.admissions: list[str] = []  # the Execution each admission call asked about

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/v1/agentry/admission":
                await self.app(scope, receive, send)
                return
            body = bytearray()

            async def recorded() -> Any:
                message = await receive()
                if message["type"] == "http.request":
                    body.extend(message.get("body", b""))
                    if not message.get("more_body"):
                        self.admissions.append(str(json.loads(body).get("execution")))
                return message

            await self.app(scope, recorded, send)

        # Idle connections kept as `python -m agentry_gateway` keeps them.
        config = uvicorn.Config(
            counted, log_level="warning", lifespan="on", timeout_keep_alive=SERVER_KEEP_ALIVE_SECONDS
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="gateway")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def start(self) -> Gateway:
        self.thread.start()
        deadline = time.monotonic() + patient(20)
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the gateway did not start on {self.url}")
            time.sleep(0.01)
        return self

    def asked(self, execution: str) -> int:
        """How many admission calls asked about this Execution."""
        return self.admissions.count(execution)

    def spend(self, ns: str, agent: str, amount: Amount) -> None:
        """Usage already settled for the user (as earlier runs' calls would have left it)."""
        subjects = Subjects(user=USER, agent=f"{ns}/{agent}", execution=f"{ns}/earlier")
        asyncio.run_coroutine_threadsafe(self.ledger.settle(subjects, "seed", amount), self.loop).result(10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        if not self.loop.is_closed():
            self.loop.close()
        self.sock.close()


@contextmanager
def running_gateway() -> Iterator[Gateway]:
    """A gateway on a reserved port of its own (modules with a governed operator of their own)."""
    address = ReservedPort()
    gw = Gateway(address, USERS_100).start()
    try:
        yield gw
    finally:
        gw.stop()
        address.hold.close()


@contextmanager
def gateway_operator(
    plane: ControlPlane, workdir: Path, gateway: Gateway, **env: str
) -> Iterator[OperatorProcess]:
    """The operator on `plane`, governed by `gateway` (admission, run tokens, checkpoint journals)."""
    op = start_operator(
        plane, workdir, AGENTRY_GATEWAY_URL=gateway.url, AGENTRY_TOKEN_KEYS=f"test:{KEY}", **env
    )
    try:
        yield op
    finally:
        op.proc.stop()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("governance-kube")) as plane:
        yield plane


@pytest.fixture(scope="module")
def gateway_address() -> Iterator[ReservedPort]:
    address = ReservedPort()
    yield address
    address.hold.close()


@pytest.fixture(scope="module")
def governed_operator(
    plane: ControlPlane, gateway_address: ReservedPort, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = start_operator(
        plane,
        tmp_path_factory.mktemp("governed-operator"),
        AGENTRY_GATEWAY_URL=gateway_address.url,
        AGENTRY_TOKEN_KEYS=f"test:{KEY}",
        AGENTRY_ADMISSION_RECHECK_SECONDS="1",
        AGENTRY_ADMISSION_UNAVAILABLE_RETRY_SECONDS="1",
        AGENTRY_ADMISSION_TIMEOUT_SECONDS="3",
        # Budgets are what this module tests: its runs (of one owner, never ending without a node) would
        # otherwise fill the owner's run quota (tests/integration/operator/test_run_gate.py tests it).
        AGENTRY_QUOTA_CONCURRENT_RUNS="0",
    )
    yield op
    op.proc.stop()


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane, "governance-tests") as c:
        yield c


@pytest.fixture
def ns(client: Client, governed_operator: OperatorProcess) -> str:
    return make_namespace(client, "gov")


@pytest.fixture
def gateway_factory(gateway_address: ReservedPort) -> Iterator[Any]:
    started: list[Gateway] = []

    def make(budgets: list[dict[str, Any]] | None = None, **extra: Any) -> Gateway:
        gw = Gateway(gateway_address, budgets, **extra).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def operator_said(op: OperatorProcess, needle: str) -> int:
    """How many of the operator's log messages (JSON lines) contain needle."""
    count = 0
    for line in op.proc.log.read_text(errors="replace").splitlines():
        try:
            message = str(json.loads(line).get("message", ""))
        except (ValueError, AttributeError):
            continue
        count += needle in message
    return count


def make_agent(client: Client, ns: str, name: str, **spec: Any) -> Any:
    body = {
        "instructions": "Summarise the news.",
        "model": {"name": MODEL},
        "secrets": [{"env": "ANTHROPIC_API_KEY", "secretKeyRef": {"name": "llm-keys", "key": "anthropic"}}],
        **spec,
    }
    meta = {"name": name, "namespace": ns, "labels": {"agentry.dev/owner": USER}}
    return client.create(Agent.from_dict({"metadata": meta, "spec": body}))


def make_execution(client: Client, ns: str, name: str, agent: str, **spec: Any) -> Any:
    """A run of the user's Agent, labelled for its owner as the API labels it (the run gate)."""
    meta = {"name": name, "namespace": ns, "labels": {"agentry.dev/owner": USER}}
    body = {"metadata": meta, "spec": {"agentRef": {"name": agent}, **spec}}
    return client.create(Execution.from_dict(body))


def status(client: Client, name: str, ns: str) -> dict[str, Any]:
    return dict(client.get(Execution, name, namespace=ns).status or {})


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def wait_status(
    client: Client, name: str, ns: str, what: str, test: Any, timeout: float = 30
) -> dict[str, Any]:
    return eventually(  # type: ignore[no-any-return]
        lambda: (s := status(client, name, ns)) and test(s) and s, timeout, f"{name}: {what}"
    )


def wait_throttled(client: Client, name: str, ns: str) -> None:
    """Wait for the run's BudgetThrottled=True, for the throttle zone."""
    st = wait_status(
        client, name, ns, "BudgetThrottled", lambda s: condition(s, "BudgetThrottled").get("status") == "True"
    )
    assert "throttle zone" in condition(st, "BudgetThrottled")["message"]


def the_job(client: Client, ex: Any, timeout: float = 30) -> Job:
    child = job_name(ex.metadata.name, ex.metadata.uid)
    return eventually(  # type: ignore[no-any-return]
        lambda: client.get(Job, child, namespace=ex.metadata.namespace), timeout, f"Job {child}"
    )


def no_job(client: Client, ex: Any) -> bool:
    child = job_name(ex.metadata.name, ex.metadata.uid)
    return not [j for j in client.list(Job, namespace=ex.metadata.namespace) if j.metadata.name == child]


def test_allowed_run_gets_a_token_secret_and_no_provider_key(
    client: Client, ns: str, gateway_factory: Any
) -> None:
    gw = gateway_factory(USERS_100)
    make_agent(
        client,
        ns,
        "news",
        budget={"maxTokensPerRun": 50000, "maxCostPerRunUSD": "2.00"},
        model={"name": MODEL, "fallbacks": [{"provider": "openai", "name": "gpt-4.1"}]},
    )
    ex = make_execution(client, ns, "run1", "news", priority=7)
    job = the_job(client, ex)
    assert job.metadata is not None and job.spec is not None

    container = job.spec.template.spec.containers[0]  # type: ignore[union-attr]
    env = {e.name: e for e in container.env or []}
    secret_name = token_secret_name(job.metadata.name or "")
    for key_env in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        ref = env[key_env].valueFrom.secretKeyRef  # type: ignore[union-attr]
        assert (ref.name, ref.key) == (secret_name, "token"), key_env
        assert env[key_env].value is None
    assert env["ANTHROPIC_BASE_URL"].value == gw.url
    assert env["OPENAI_BASE_URL"].value == gw.url + "/v1"
    refs = [
        e.valueFrom.secretKeyRef.name for e in container.env or [] if e.valueFrom and e.valueFrom.secretKeyRef
    ]
    assert "llm-keys" not in refs  # the Agent's provider key is not in the pod
    assert container.envFrom is None

    secret = client.get(Secret, secret_name, namespace=ns)
    assert secret.metadata is not None and secret.data is not None
    owner = (secret.metadata.ownerReferences or [])[0]
    assert (owner.kind, owner.uid) == ("Execution", ex.metadata.uid)
    assert (secret.metadata.labels or {})["agentry.dev/execution"] == "run1"
    claims = verify(base64.b64decode(secret.data["token"]).decode(), KEYRING, expected="run")
    assert (claims.namespace, claims.execution, claims.execution_uid) == (ns, "run1", ex.metadata.uid)
    assert (claims.agent, claims.user, claims.priority) == ("news", USER, 7)
    assert claims.limits.tokens == 50000 and claims.limits.cost_usd == "2.00"
    assert claims.models == (MODEL, "gpt-4.1")  # the Agent's model chain: no other model is served

    st = wait_status(client, "run1", ns, "jobName", lambda s: s.get("jobName") == job.metadata.name)
    assert condition(st, "BudgetExceeded")["status"] == "False"
    assert condition(st, "BudgetThrottled")["status"] == "False"

    # Once the run is over (here: cancelled), the gateway is told: its token admits no more calls.
    counter = counter_id(Scope.EXECUTION, f"{ns}/run1/{ex.metadata.uid}")
    assert "endedAt" not in gw.ledger.docs.get(counter, {})
    client.patch(Execution, "run1", {"spec": {"cancel": True}}, namespace=ns, patch_type=PatchType.MERGE)
    wait_status(client, "run1", ns, "Cancelled", lambda s: s.get("phase") == "Cancelled")
    eventually(lambda: "endedAt" in gw.ledger.docs.get(counter, {}), 10, "the run's end at the gateway")
    # Asked once for this start: the Job's and the status' own events, handled before the later
    # cancel (one object's events are handled in order), did not ask again; nor did the cancel.
    assert gw.admissions == ["run1"]


def test_nearly_spent_budget_holds_low_priority_and_throttles_normal_until_it_frees(
    client: Client, ns: str, gateway_factory: Any
) -> None:
    gw = gateway_factory(USERS_100)
    make_agent(client, ns, "digest")
    gw.spend(ns, "digest", Amount(messages=85))  # 85 %: throttle zone

    low = make_execution(client, ns, "low", "digest", priority=2)
    normal = make_execution(client, ns, "normal", "digest")  # the Agent's default, 5

    st = wait_status(client, "low", ns, "BudgetWait", lambda s: s.get("reason") == "BudgetWait")
    assert st["phase"] == "Pending"
    waiting = condition(st, "BudgetExceeded")
    assert (waiting["status"], waiting["reason"]) == ("True", "BudgetWait")
    assert "85.0 %" in st["message"] and "priority 2" in st["message"] and st["message"] == waiting["message"]

    the_job(client, normal)  # normal priority starts in the throttle zone, on the cheaper model
    wait_throttled(client, "normal", ns)

    # Asked again about every second (the recheck bound): wait for two more questions about `low`,
    # each answered "wait", so it is still waiting with no Job; `normal`, started, is not asked again.
    eventually(lambda: gw.asked("low") >= 3, 30, "low to be asked again twice")
    assert no_job(client, low) and status(client, "low", ns)["reason"] == "BudgetWait"
    assert gw.asked("normal") == 1

    gw.offset = 6 * 3600  # the 5 h window has moved past the usage
    job = the_job(client, low, timeout=20)
    assert job.metadata is not None
    st = wait_status(client, "low", ns, "released", lambda s: s.get("jobName") == job.metadata.name)
    released = condition(st, "BudgetExceeded")
    assert (released["status"], released["reason"]) == ("False", "WithinBudget")
    assert client.get(Secret, token_secret_name(job.metadata.name or ""), namespace=ns)


def test_a_throttled_start_is_on_the_execution_before_its_job_exists(
    client: Client, ns: str, gateway_factory: Any, governed_operator: OperatorProcess
) -> None:
    """The throttle is recorded before the Job is created, so an operator that crashes right after
    creating it (and adopts the Job on restart, without asking again) cannot lose it. A quota that
    refuses Jobs holds the run between the two steps."""
    client.create(
        ResourceQuota(
            metadata=ObjectMeta(name="no-jobs", namespace=ns),
            spec=ResourceQuotaSpec(hard={"count/jobs.batch": "0"}),
        )
    )
    # In force once its controller has counted it: before, the API server refuses with "status
    # unknown for quota" (a wait too, but not the refusal counted below), for long on a busy machine.
    eventually(
        lambda: (client.get(ResourceQuota, "no-jobs", namespace=ns).status or ResourceQuotaStatus()).hard,
        60,
        "the quota counted by its controller",
    )
    gw = gateway_factory(USERS_100)
    make_agent(client, ns, "digest")
    gw.spend(ns, "digest", Amount(messages=85))  # 85 %: normal priority starts, throttled
    ex = make_execution(client, ns, "held", "digest")

    wait_throttled(client, "held", ns)
    # The operator went on to create the Job and the quota refused it, twice (it retries).
    child = job_name("held", ex.metadata.uid)
    eventually(
        lambda: operator_said(governed_operator, f'"{child}" is forbidden: exceeded quota') >= 2,
        40,
        "the quota to refuse the Job twice",
    )
    assert no_job(client, ex) and not status(client, "held", ns).get("jobName")

    client.delete(ResourceQuota, "no-jobs", namespace=ns)
    job = the_job(client, ex, timeout=40)  # the start is retried every few seconds
    assert job.metadata is not None
    st = wait_status(client, "held", ns, "jobName", lambda s: s.get("jobName") == job.metadata.name)
    assert condition(st, "BudgetThrottled")["status"] == "True"


def test_an_approved_resume_is_admitted_again(client: Client, ns: str, gateway_factory: Any) -> None:
    """Hours may pass between a pause and its approval: the resume asks the gateway again, and a run
    whose budget has gone meanwhile waits (still WaitingApproval) instead of failing at its first call."""
    gw = gateway_factory(USERS_100)
    make_agent(client, ns, "poster")
    ex = make_execution(client, ns, "risky", "poster", priority=2)
    first = the_job(client, ex)
    assert first.metadata is not None
    play_kubelet(client, job_pod(client, ns, first.metadata.name or ""), "Failed", 30, APPROVAL_REPORT)
    wait_status(client, "risky", ns, "WaitingApproval", lambda s: s.get("phase") == "WaitingApproval")

    gw.spend(ns, "poster", Amount(messages=85))  # meanwhile: 85 %, where priority 2 waits
    decision = {"id": APPROVAL_REPORT["approval"]["id"], "approved": True, "decidedBy": "bob"}
    client.patch(
        Execution,
        "risky",
        {"spec": {"approvals": [decision]}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    st = wait_status(client, "risky", ns, "BudgetWait", lambda s: s.get("reason") == "BudgetWait")
    assert st["phase"] == "WaitingApproval" and "priority 2" in st["message"]
    held = condition(st, "BudgetExceeded")
    assert (held["status"], held["reason"]) == ("True", "BudgetWait")
    asked = gw.asked("risky")
    eventually(lambda: gw.asked("risky") > asked, 30, "risky to be asked again")  # and told to wait again
    assert status(client, "risky", ns)["reason"] == "BudgetWait"
    assert [j.metadata.name for j in client.list(Job, namespace=ns)] == [first.metadata.name]  # type: ignore[union-attr]

    gw.offset = 6 * 3600  # the window has moved past the usage
    first_name = first.metadata.name
    st = wait_status(client, "risky", ns, "resumed", lambda s: s.get("jobName") not in (None, first_name), 20)
    assert st["reason"] == "Resumed" and "bob" in st["message"]
    assert condition(st, "BudgetExceeded")["status"] == "False"
    assert client.get(Secret, token_secret_name(st["jobName"]), namespace=ns)


def test_deleting_a_running_execution_ends_its_run_token(
    client: Client, ns: str, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kubectl delete` of a run in flight: the pod goes with it (garbage collector), but a copy of its
    token must not keep spending. The Execution watch's DELETED event carries the last state; the
    operator's handler for it (handlers/admission.execution_deleted, called here with that state as
    the event hands it over) tells the gateway, which then refuses the token."""
    with ScriptedLLM() as llm:
        llm.script([{"text": "still alive"}] * 2)
        monkeypatch.setenv("GOV_TEST_ANTHROPIC", "sk-ant-test-0123456789")
        key = {"apiKeyEnv": "GOV_TEST_ANTHROPIC"}
        channel = {"name": "anthropic", "protocol": "anthropic", "baseURL": llm.url, **key}
        gw = gateway_factory(USERS_100, channels=[channel])
        make_agent(client, ns, "doomed")
        ex = make_execution(client, ns, "doomed1", "doomed")
        job = the_job(client, ex)
        assert job.metadata is not None
        wait_status(client, "doomed1", ns, "jobName", lambda s: s.get("jobName") == job.metadata.name)
        secret = client.get(Secret, token_secret_name(job.metadata.name or ""), namespace=ns)
        token = base64.b64decode((secret.data or {})["token"]).decode()
        call = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "go"}]}
        before = localhttp.post(f"{gw.url}/v1/messages", json=call, headers={"x-api-key": token}, timeout=30)

        last = client.get(Execution, "doomed1", namespace=ns).to_dict()
        client.delete(Execution, "doomed1", namespace=ns)
        state = State()
        state.governance = Governance(OperatorSettings(gateway_url=gw.url), KEYRING)

        async def deleted() -> None:
            assert state.governance is not None
            try:
                await execution_deleted(state, last, logging.getLogger("test"))
            finally:
                await state.governance.aclose()

        asyncio.run(deleted())
        after = localhttp.post(f"{gw.url}/v1/messages", json=call, headers={"x-api-key": token}, timeout=30)
    assert before.status_code == 200, before.text
    assert after.status_code == 402 and "admits no more calls" in after.json()["error"]["message"]
    counter = counter_id(Scope.EXECUTION, f"{ns}/doomed1/{ex.metadata.uid}")
    assert "endedAt" in gw.ledger.docs[counter]
    assert len(llm.requests) == 1  # the call after the deletion reached no provider
    # A run that ended already (it told the gateway then), or never had a Job, is not ended twice.
    assert not deleted_with_live_token({"status": {"phase": "Succeeded", "jobName": "j"}})
    assert not deleted_with_live_token({"status": {"phase": "Pending"}})
    assert deleted_with_live_token({"status": {"phase": "WaitingApproval", "jobName": "j"}})


def test_refused_runs_fail_or_are_skipped_with_budget_exceeded(
    client: Client, ns: str, gateway_factory: Any
) -> None:
    gw = gateway_factory(
        [
            {
                "name": "lifetime",
                "scope": "agent",
                "match": f"{ns}/spent",
                "limits": [{"window": "total", "messages": 10}],
            },
            {
                "name": "monthly",
                "scope": "agent",
                "match": f"{ns}/weekly",
                "limits": [{"window": "30d", "messages": 10}],
            },
        ]
    )
    make_agent(client, ns, "spent")
    make_agent(
        client,
        ns,
        "weekly",
        schedule={"cron": "0 0 1 1 *", "startingDeadlineSeconds": 300, "suspend": True},
    )
    gw.spend(ns, "spent", Amount(messages=10))
    gw.spend(ns, "weekly", Amount(messages=10))

    manual = make_execution(client, ns, "manual", "spent")
    st = wait_status(client, "manual", ns, "Failed", lambda s: s.get("phase") == "Failed")
    assert st["reason"] == "BudgetExceeded" and "does not free up on its own" in st["message"]
    assert condition(st, "BudgetExceeded")["status"] == "True"
    assert condition(st, "Succeeded")["status"] == "False"

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    scheduled = make_execution(client, ns, "tick", "weekly", trigger="Schedule", scheduledTime=now)
    st = wait_status(client, "tick", ns, "Skipped", lambda s: s.get("phase") == "Skipped")
    assert st["reason"] == "BudgetExceeded" and "after the maximum wait" in st["message"]
    assert no_job(client, manual) and no_job(client, scheduled)


def test_gateway_down_keeps_the_run_pending_then_it_starts(
    client: Client, ns: str, gateway_factory: Any, governed_operator: OperatorProcess
) -> None:
    make_agent(client, ns, "later")
    ex = make_execution(client, ns, "blocked", "later")
    st = wait_status(
        client, "blocked", ns, "GatewayUnavailable", lambda s: s.get("reason") == "GatewayUnavailable"
    )
    assert st["phase"] == "Pending"
    unknown = condition(st, "BudgetExceeded")
    assert (unknown["status"], unknown["reason"]) == ("Unknown", "GatewayUnavailable")
    # It tried the gateway again (retry after 1 s) and still failed closed: no Job.
    eventually(
        lambda: operator_said(governed_operator, "admission of execution blocked (") >= 2,
        30,
        "a second try of the gateway",
    )
    assert no_job(client, ex)

    gw = gateway_factory()
    job = the_job(client, ex, timeout=20)
    assert job.metadata is not None
    st = wait_status(client, "blocked", ns, "started", lambda s: s.get("jobName") == job.metadata.name)
    assert condition(st, "BudgetExceeded")["status"] == "False"
    assert len(gw.admissions) >= 1


def test_priority_is_validated_and_immutable(client: Client, ns: str) -> None:
    make_agent(client, ns, "bounds")
    with pytest.raises(ApiError, match=r"spec\.priority"):
        make_execution(client, ns, "too-high", "bounds", priority=11)
    make_execution(client, ns, "fixed", "bounds", priority=3)
    with pytest.raises(ApiError, match=r"spec\.priority is immutable"):
        client.patch(Execution, "fixed", {"spec": {"priority": 9}}, namespace=ns, patch_type=PatchType.MERGE)
    make_execution(client, ns, "unset", "bounds")
    with pytest.raises(ApiError, match=r"spec\.priority is immutable"):
        client.patch(Execution, "unset", {"spec": {"priority": 9}}, namespace=ns, patch_type=PatchType.MERGE)
    assert client.get(Agent, "bounds", namespace=ns).spec["priority"] == 5


def test_agent_bypassing_the_gateway_is_refused(client: Client, ns: str) -> None:
    with pytest.raises(ApiError) as refused:
        make_agent(client, ns, "direct", model={"name": MODEL, "baseURL": "http://lmstudio.lan:1234/v1"})
    assert "bypasses the LLM gateway" in str(refused.value)
