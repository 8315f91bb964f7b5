"""The operator <-> gateway governance path end to end on the Firestore ledger (Google's emulator), not
only on the in-memory one: a real operator asks a real gateway's admission, whose budget counters are
Firestore documents; the run's calls through the gateway are metered into Firestore; the run's end is
recorded there and its token then admits nothing; a held run starts once the window frees.

Own control plane (no other operator acts on these objects), one governed operator and one gateway
(uvicorn, tests/integration/gateway/harness.py) with its Firestore ledger for the module. Upstream
provider: the scripted LLM server (provider APIs cannot be reached from here).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore
from lightkube import Client
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from agentry_common.governance import Scope
from agentry_common.naming import token_secret_name
from agentry_common.records import Collection
from agentry_gateway.budgets import Amount, Counter, counter_id
from agentry_gateway.ledger import FirestoreLedger, Subjects
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Execution
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client
from tests.integration.gateway.harness import ANTHROPIC_KEY, KEYRING, GatewayServer, config, post, settings
from tests.integration.operator.test_governance import (
    MODEL,
    USER,
    USERS_100,
    condition,
    make_agent,
    make_execution,
    no_job,
    the_job,
    wait_status,
    wait_throttled,
)

pytestmark = pytest.mark.integration

KEY = KEYRING.keys[KEYRING.current].decode()
MESSAGE = {"model": MODEL, "max_tokens": 40, "messages": [{"role": "user", "content": "go"}]}


@pytest.fixture(scope="module")
def project(firestore_emulator: FirestoreEmulator) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    firestore_emulator.wipe(name)


@pytest.fixture(scope="module")
def db(project: str) -> Iterator[firestore.Client]:
    client = firestore.Client(project=project)
    yield client
    client.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(project: str, llm: ScriptedLLM) -> Iterator[GatewayServer]:
    previous = {k: os.environ.get(k) for k in ("GW_TEST_ANTHROPIC", "GW_TEST_OPENAI")}
    os.environ["GW_TEST_ANTHROPIC"] = os.environ["GW_TEST_OPENAI"] = ANTHROPIC_KEY
    gw = GatewayServer(
        settings(ledger="firestore", google_cloud_project=project), config(llm, budgets=USERS_100)
    ).start()
    yield gw
    gw.stop()
    for k, v in previous.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("ledger-firestore-kube")) as plane:
        yield plane


@pytest.fixture(scope="module")
def governed_operator(
    plane: ControlPlane, gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = start_operator(
        plane,
        tmp_path_factory.mktemp("ledger-firestore-operator"),
        AGENTRY_GATEWAY_URL=gateway.url,
        AGENTRY_TOKEN_KEYS=f"{KEYRING.current}:{KEY}",
        AGENTRY_ADMISSION_RECHECK_SECONDS="1",
        AGENTRY_ADMISSION_UNAVAILABLE_RETRY_SECONDS="1",
        AGENTRY_ADMISSION_TIMEOUT_SECONDS="10",
    )
    yield op
    op.proc.stop()


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane, "ledger-firestore-tests") as c:
        yield c


@pytest.fixture
def ns(client: Client, governed_operator: OperatorProcess) -> str:
    return make_namespace(client, "fsgov")


def counter_doc(db: firestore.Client, scope: Scope, subject: str) -> dict[str, Any] | None:
    snap = db.collection(Collection.BUDGET_COUNTERS).document(counter_id(scope, subject)).get()
    return snap.to_dict() if snap.exists else None


def counted(db: firestore.Client, scope: Scope, subject: str) -> Counter:
    return Counter.from_doc(scope, subject, counter_doc(db, scope, subject))


def run_token(client: Client, ns: str, job_name: str) -> str:
    secret = client.get(Secret, token_secret_name(job_name), namespace=ns)
    assert secret.data is not None
    return base64.b64decode(secret.data["token"]).decode()


def test_admission_metering_and_end_run_on_the_firestore_ledger(
    client: Client, ns: str, gateway: GatewayServer, db: firestore.Client, llm: ScriptedLLM
) -> None:
    assert isinstance(gateway.gateway.ledger, FirestoreLedger)
    make_agent(client, ns, "digest")
    # 85 of the user's 100 messages spent by earlier runs: a document in Firestore.
    earlier = Subjects(user=USER, agent=f"{ns}/digest", execution=f"{ns}/earlier")
    gateway.run(gateway.gateway.ledger.settle(earlier, "seed", Amount(messages=85)))
    gateway.drain()
    assert counted(db, Scope.USER, USER).total.messages == 85

    # Admission read from Firestore: low priority waits, normal priority starts throttled.
    low = make_execution(client, ns, "low", "digest", priority=2)
    normal = make_execution(client, ns, "normal", "digest")
    st = wait_status(client, "low", ns, "BudgetWait", lambda s: s.get("reason") == "BudgetWait", 60)
    assert st["phase"] == "Pending" and "85.0 %" in st["message"] and "priority 2" in st["message"]
    waiting = condition(st, "BudgetExceeded")
    assert (waiting["status"], waiting["reason"]) == ("True", "BudgetWait")
    job = the_job(client, normal, timeout=60)
    assert job.metadata is not None and job.metadata.name
    wait_throttled(client, "normal", ns)
    assert no_job(client, low)

    # Metering: the run's call, with the token the operator gave its pod, is charged in Firestore.
    token = run_token(client, ns, job.metadata.name)
    llm.script([{"text": "the digest"}])
    answer = post(gateway.url, "/v1/messages", token, MESSAGE)
    assert answer.status_code == 200, answer.text
    gateway.drain()
    run_subject = f"{ns}/normal/{normal.metadata.uid}"
    assert counted(db, Scope.EXECUTION, run_subject).total.messages == 1
    assert counted(db, Scope.USER, USER).total.messages == 86
    records = eventually(
        lambda: [
            d
            for d in (s.to_dict() for s in db.collection(Collection.LLM_CALLS).stream())
            if d and d.get("namespace") == ns and d.get("execution") == "normal"
        ],
        60,
        "the call record in Firestore",
    )
    assert len(records) == 1
    record = records[0]
    assert record["outcome"] == "ok" and record["executionUid"] == normal.metadata.uid
    assert (record["agent"], record["user"], record["charged"]["messages"]) == ("digest", USER, 1)

    # The run ends (cancelled): the operator tells the gateway, Firestore records it, the token is dead.
    client.patch(Execution, "normal", {"spec": {"cancel": True}}, namespace=ns, patch_type=PatchType.MERGE)
    wait_status(client, "normal", ns, "Cancelled", lambda s: s.get("phase") == "Cancelled", 60)
    eventually(
        lambda: "endedAt" in (counter_doc(db, Scope.EXECUTION, run_subject) or {}),
        60,
        "the run's end in Firestore",
    )
    late = post(gateway.url, "/v1/messages", token, MESSAGE)
    assert late.status_code == 402 and "ended" in late.text

    # The window moves past the earlier usage: the held run is admitted and starts.
    gateway.gateway.ledger.clock = lambda: time.time() + 6 * 3600
    held = the_job(client, low, timeout=60)
    assert held.metadata is not None
    st = wait_status(client, "low", ns, "released", lambda s: s.get("jobName") == held.metadata.name, 60)
    released = condition(st, "BudgetExceeded")
    assert (released["status"], released["reason"]) == ("False", "WithinBudget")
    assert client.get(Secret, token_secret_name(held.metadata.name or ""), namespace=ns)
