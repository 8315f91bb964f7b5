"""Durable runs in the operator's pure parts: the pod's checkpoint settings, the state keys and the
follow-up's parent keys, the run token's parent claims, the exit code 75 rule, status.checkpoint, and
the gateway's prune call (docs/runs.md)."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from agentry_common import checkpoints as cp
from agentry_common.conditions import Reason
from agentry_common.exitcodes import FINAL, ExitCode
from agentry_common.models import Phase
from agentry_common.tokens import Keyring, verify
from agentry_operator.builders.execution_status import observe, observe_pod, status_patch
from agentry_operator.builders.follow_up import Parent
from agentry_operator.builders.governance import build_token_secret
from agentry_operator.builders.job import build_job, child_labels, owner_reference
from agentry_operator.governance import Governance
from agentry_operator.handlers.journals import prune_journals
from agentry_operator.handlers.state import State
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

GATEWAY = "http://agentry-gateway.agentry.svc:8090"
OLD_KEY, NEW_KEY = b"o" * 40, b"n" * 40
KEYRING = Keyring({"2025-01": OLD_KEY, "2025-05": NEW_KEY}, "2025-05")
AGENT: dict[str, Any] = {
    "metadata": {"name": "news", "namespace": "ns", "uid": "a-uid"},
    "spec": {"instructions": "x", "model": {"name": "m"}, "timeoutSeconds": 600},
}
EXECUTION: dict[str, Any] = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Execution",
    "metadata": {"name": "run-2", "namespace": "ns", "uid": "e-uid"},
    "spec": {"agentRef": {"name": "news"}, "trigger": "Manual", "parentRef": {"name": "run-1"}},
}
PARENT = Parent("run-1", "p-uid")


def governed() -> Settings:
    return Settings(gateway_url=GATEWAY + "/", token_keys="2025-05:" + "s" * 40)


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_a_governed_pod_gets_the_checkpoint_url_and_a_follow_up_its_parent() -> None:
    job = build_job(EXECUTION, AGENT, "corr", governed(), token_secret="t", parent=PARENT)
    env = env_of(job)
    assert env[cp.ENV_CHECKPOINT_URL]["value"] == GATEWAY  # the gateway's base URL, as the provider's
    assert env[cp.ENV_PARENT_EXECUTION]["value"] == "run-1"
    keys = {"secretKeyRef": {"name": "t", "key": cp.SECRET_PARENT_STATE_KEYS, "optional": True}}
    assert env[cp.ENV_PARENT_STATE_KEYS]["valueFrom"] == keys
    plain = env_of(
        build_job(
            {**EXECUTION, "spec": {"agentRef": {"name": "news"}}},
            AGENT,
            "c",
            governed(),
            "j",
            token_secret="t",
        )
    )
    assert cp.ENV_CHECKPOINT_URL in plain
    assert cp.ENV_PARENT_EXECUTION not in plain and cp.ENV_PARENT_STATE_KEYS not in plain
    off = env_of(build_job(EXECUTION, AGENT, "corr", Settings()))
    assert cp.ENV_CHECKPOINT_URL not in off  # no gateway: no journal


def test_exit_75_ends_the_job_for_the_next_one_final_codes_fail_it_and_the_pod_gets_its_grace() -> None:
    spec = build_job(EXECUTION, AGENT, "corr", Settings())["spec"]
    fail_job, next_job, disruption = spec["podFailurePolicy"]["rules"]
    assert fail_job["action"] == "FailJob" and set(fail_job["onExitCodes"]["values"]) == set(FINAL)
    assert ExitCode.RESUME_LIMIT in fail_job["onExitCodes"]["values"]
    assert ExitCode.INTERRUPTED not in fail_job["onExitCodes"]["values"]
    # Ended at once (the operator starts the next Job), before the disruption rule can ignore it.
    assert next_job == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "agent", "operator": "In", "values": [75]},
    }
    assert disruption["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert spec["podReplacementPolicy"] == "Failed"  # a replacement only once the old pod is gone
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == cp.TERMINATION_GRACE_SECONDS > cp.STEP_GRACE_SECONDS


def test_state_keys_are_derived_so_a_follow_up_gets_its_parents_keys() -> None:
    gov = Governance(governed(), KEYRING)
    key = gov.state_key("ns", "e-uid")
    assert key == cp.derive_state_key(NEW_KEY, "ns", "e-uid") == gov.state_key("ns", "e-uid")
    assert gov.state_key("ns", "e-uid-2") != key and gov.state_key("ns2", "e-uid") != key
    # The parent signed with the ring's old key (rotated since): one of the candidates verifies it.
    parent_key = cp.derive_state_key(OLD_KEY, "ns", "p-uid")
    entries = [cp.sign_entry(parent_key, "", 1, "user", {"text": "hi"})]
    candidates = gov.parent_keys("ns", PARENT)
    assert len(candidates) == 2 and cp.verify_chain(candidates, entries) == parent_key
    assert cp.verify_chain(gov.parent_keys("other-ns", PARENT), entries) is None


def test_the_secret_holds_the_parent_keys_and_the_token_names_the_parent() -> None:
    gov = Governance(governed(), KEYRING)
    labels = child_labels("news", "run-2", "Manual")
    keys = gov.parent_keys("ns", PARENT)
    secret = build_token_secret(EXECUTION, "s", "tok", labels, owner_reference(EXECUTION), "k", keys)
    assert cp.parse_keys(secret["stringData"][cp.SECRET_PARENT_STATE_KEYS]) == keys
    plain = build_token_secret(EXECUTION, "s", "tok", labels, owner_reference(EXECUTION), "k")
    assert cp.SECRET_PARENT_STATE_KEYS not in plain["stringData"]
    claims = verify(gov.run_token(EXECUTION, AGENT, parent=PARENT), KEYRING, expected="run")
    assert (claims.parent, claims.parent_uid) == ("run-1", "p-uid")
    alone = verify(gov.run_token(EXECUTION, AGENT), KEYRING, expected="run")
    assert (alone.parent, alone.parent_uid) == ("", "")


# -- status --------------------------------------------------------------------------------------------


def pod(name: str, created: str, state: dict[str, Any], phase: str = "Failed") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase, "containerStatuses": [{"state": state}]},
    }


def exited(code: int, report: dict[str, Any] | None = None) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": code}
    if report is not None:
        terminated["message"] = json.dumps(report)
    return {"terminated": terminated}


CHECKPOINT = {"entries": 12, "resumes": 1, "interruptedCalls": 1, "lastAt": "2026-01-02T03:04:05.123+00:00"}
RUNNING_JOB: dict[str, Any] = {"spec": {}, "status": {"active": 1, "startTime": "2026-01-02T03:00:00Z"}}


def test_a_pod_that_stopped_at_a_checkpoint_keeps_the_run_running_interrupted() -> None:
    lost = pod("p1", "2026-01-02T03:00:00Z", exited(75, {"checkpoint": CHECKPOINT}))
    seen = observe_pod(lost)
    assert seen is not None and (seen.phase, seen.reason) == (Phase.RUNNING, Reason.INTERRUPTED)
    assert seen.next_job  # its exit code ends its Job: the next one need not wait for the Job's condition
    assert "resuming from checkpoint" in seen.message
    assert seen.checkpoint is not None and seen.checkpoint.entries == 12
    assert seen.checkpoint.last_at == "2026-01-02T03:04:05Z"
    assert observe_pod(pod("p1", "2026-01-02T03:00:00Z", exited(1))) is None  # other ends: the Job's
    # Read with the Job: its replacement not started yet, then running.
    waiting = pod("p2", "2026-01-02T03:05:00Z", {"waiting": {"reason": "ContainerCreating"}}, "Pending")
    seen = observe(RUNNING_JOB, [lost, waiting])
    assert (seen.phase, seen.reason, seen.attempts) == (Phase.RUNNING, Reason.INTERRUPTED, 2)
    running = pod("p2", "2026-01-02T03:05:00Z", {"running": {}}, "Running")
    assert observe(RUNNING_JOB, [lost, running]).reason == Reason.RUNNING


def test_a_pod_that_exited_0_ends_the_run_before_the_job_says_so() -> None:
    """Exit 0 completes the Job (one completion): its pod's event is the outcome, with the report."""
    report = {"summary": "done", "stopReason": "end_turn", "usage": {"inputTokens": 12, "outputTokens": 3}}
    done = exited(0, report)
    done["terminated"]["finishedAt"] = "2026-01-02T03:01:00Z"
    seen = observe_pod(pod("p1", "2026-01-02T03:00:00Z", done, "Succeeded"))
    assert seen is not None and (seen.phase, seen.reason) == (Phase.SUCCEEDED, Reason.COMPLETED)
    assert seen.result is not None and seen.result.summary == "done"
    assert seen.usage is not None and seen.usage.input_tokens == 12
    assert seen.completion_time == "2026-01-02T03:01:00Z"
    # Never a silent success: no report, the reason says so.
    bare = observe_pod(pod("p1", "2026-01-02T03:00:00Z", exited(0), "Succeeded"))
    assert bare is not None and (bare.phase, bare.reason) == (Phase.SUCCEEDED, Reason.NO_REPORT)


def test_resumed_too_often_fails_resume_limit_reached_and_a_job_ended_by_75_asks_for_the_next() -> None:
    failed = {
        "spec": {},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]},
    }
    seen = observe(failed, [pod("p3", "2026-01-02T03:10:00Z", exited(17, {"summary": "resumed 3 times"}))])
    assert (seen.phase, seen.reason, seen.next_job) == (Phase.FAILED, Reason.RESUME_LIMIT_REACHED, False)
    report = {"summary": "interrupted", "checkpoint": CHECKPOINT}
    seen = observe(failed, [pod("p1", "2026-01-02T03:00:00Z", exited(75, report))])
    assert (seen.phase, seen.reason, seen.next_job) == (Phase.RUNNING, Reason.INTERRUPTED, True)
    assert seen.checkpoint is not None and seen.checkpoint.entries == 12
    # The pod was deleted (gone from the API): the Job's condition names the exit code.
    gone = {
        "reason": "PodFailurePolicy",
        "message": "Container agent for pod ns/p1 failed with exit code 75 matching FailJob rule at index 1",
    }
    seen = observe(
        {"spec": {}, "status": {"conditions": [{**failed["status"]["conditions"][0], **gone}]}}, []
    )
    assert (seen.phase, seen.reason, seen.next_job) == (Phase.RUNNING, Reason.INTERRUPTED, True)
    other = {**gone, "message": gone["message"].replace("code 75", "code 1")}
    seen = observe(
        {"spec": {}, "status": {"conditions": [{**failed["status"]["conditions"][0], **other}]}}, []
    )
    assert (seen.phase, seen.next_job) == (Phase.FAILED, False)
    # Its deadline passed meanwhile: that is the end, not a resume.
    late = {
        "spec": {"activeDeadlineSeconds": 60},
        "status": {"conditions": [{**failed["status"]["conditions"][0], "reason": "DeadlineExceeded"}]},
    }
    seen = observe(late, [pod("p1", "2026-01-02T03:00:00Z", exited(75, report))])
    assert (seen.phase, seen.reason, seen.next_job) == (Phase.FAILED, Reason.DEADLINE_EXCEEDED, False)


def test_the_next_job_is_named_after_the_one_it_follows_and_the_run_keeps_its_start() -> None:
    from agentry_operator.handlers.next_job import next_job_name

    first = next_job_name(EXECUTION["metadata"], "run-1-abc")
    assert first == next_job_name(EXECUTION["metadata"], "run-1-abc")  # a reconcile run twice adopts it
    assert next_job_name(EXECUTION["metadata"], first) not in (first, "run-1-abc")
    seen = observe(RUNNING_JOB, [])
    patch = status_patch({"startTime": "2026-01-02T02:00:00Z"}, seen, 1, "2026-01-02T03:20:00Z", first)
    assert patch.start_time == "2026-01-02T02:00:00Z" and patch.job_name == first


def test_the_final_report_s_checkpoint_reaches_the_status_bounded() -> None:
    done = {"spec": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}}
    report = {"summary": "ok", "checkpoint": CHECKPOINT}
    seen = observe(done, [pod("p2", "2026-01-02T03:05:00Z", exited(0, report), "Succeeded")])
    patch = status_patch({}, seen, 1, "2026-01-02T03:20:00Z").model_dump(by_alias=True, exclude_none=True)
    assert patch["checkpoint"] == {
        "entries": 12,
        "resumes": 1,
        "interruptedCalls": 1,
        "lastAt": "2026-01-02T03:04:05Z",
    }
    junk = {"entries": 10**12, "resumes": -3, "interruptedCalls": True, "lastAt": "yesterday"}
    seen = observe(done, [pod("p2", "t", exited(0, {"summary": "ok", "checkpoint": junk}), "Succeeded")])
    assert seen.checkpoint is not None
    assert (seen.checkpoint.entries, seen.checkpoint.resumes, seen.checkpoint.interrupted_calls) == (
        cp.MAX_RUN_ENTRIES,
        0,
        0,
    )
    assert seen.checkpoint.last_at is None
    no_journal = observe(done, [pod("p2", "t", exited(0, {"summary": "ok"}), "Succeeded")])
    assert no_journal.checkpoint is None


# -- pruning -------------------------------------------------------------------------------------------


async def test_prune_asks_the_gateway_in_batches_with_a_service_token_and_never_raises() -> None:
    asked: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == cp.CHECKPOINT_PRUNE_PATH
        claims = verify(request.headers["authorization"].removeprefix("Bearer "), KEYRING)
        assert claims.typ == "svc" and claims.subject == "operator"
        asked.append(cp.PruneRequest.model_validate(json.loads(request.content)).wire())
        return httpx.Response(500 if len(asked) == 2 else 200, json={})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=GATEWAY)
    gov = Governance(governed(), KEYRING, http=http)
    runs = [("ns", f"uid-{i}") for i in range(1001)] + [("ns", "uid-0"), ("", "x")]
    await gov.prune(runs)  # a 500 on the second batch: logged, the third still sent
    assert [len(b["runs"]) for b in asked] == [500, 500, 1]
    assert asked[0]["runs"][0] == {"namespace": "ns", "uid": "uid-0"}

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    gov.http = httpx.AsyncClient(transport=httpx.MockTransport(down), base_url=GATEWAY)
    await gov.prune([("ns", "u")])  # does not raise


async def test_prune_journals_takes_the_runs_of_executions_and_nothing_without_the_gateway() -> None:
    sent: list[list[tuple[str, str]]] = []

    class Recorder(Governance):
        async def prune(self, runs: Any) -> None:
            sent.append(list(runs))

    state = State()
    log = logging.getLogger("test")
    await prune_journals(state, [EXECUTION], log)  # gateway off: nothing to ask
    state.governance = Recorder(governed(), KEYRING)
    await prune_journals(state, [EXECUTION, {"metadata": {"name": "no-uid", "namespace": "ns"}}], log)
    assert sent == [[("ns", "e-uid")]]


LOST = pod("p", "2026-01-02T03:00:00Z", exited(75, {"checkpoint": CHECKPOINT}))
FAILED_BY_75 = {
    "metadata": {"name": "run-1-j99"},
    "spec": {},
    "status": {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailurePolicy",
                "message": "Container agent for pod ns/p failed with exit code 75 matching FailJob rule",
            }
        ]
    },
}


@pytest.mark.parametrize(
    ("job", "pods", "goes_on"),
    [
        (FAILED_BY_75, [], True),  # the Job ended on 75 (its pod deleted since)
        ({**RUNNING_JOB, "metadata": {"name": "run-1-j99"}}, [LOST], True),  # the Job not failed yet
        (
            {**RUNNING_JOB, "metadata": {"name": "run-1-j99"}},
            [pod("p", "2026-01-02T03:00:00Z", {"running": {}}, "Running")],
            False,
        ),
    ],
    ids=["job-failed", "pod-exited-75", "pod-running"],
)
async def test_the_next_job_starts_once_the_pod_exited_75_or_its_job_ended_on_it(
    job: dict[str, Any], pods: list[dict[str, Any]], goes_on: bool
) -> None:
    """Whether `continue_run` goes on (here: to the resume limit, which ends the run) or waits."""
    from agentry_operator.handlers import next_job

    written: list[dict[str, Any]] = []

    class Client:
        async def get(self, res: Any, name: str, namespace: str) -> dict[str, Any]:
            return job

        async def list(self, res: Any, namespace: str, labels: dict[str, str]) -> Any:
            if "agentry.dev/execution" in labels:
                for _ in range(next_job.MAX_JOBS):
                    yield {"metadata": {"name": "j"}}
            else:
                for item in pods:
                    yield item

        async def patch(self, res: Any, name: str, obj: Any, **kw: Any) -> Any:
            written.append(obj if isinstance(obj, dict) else obj.model_dump(by_alias=True, exclude_none=True))
            raise RuntimeError("stop here: the status is what matters")

    body = {**EXECUTION, "status": {"phase": "Running", "reason": "Interrupted", "jobName": "run-1-j99"}}
    go = next_job.continue_run(Client(), Settings(), State(), body, AGENT, logging.getLogger("t"))  # type: ignore[arg-type]
    if goes_on:
        with pytest.raises(RuntimeError, match="stop here"):
            await go
        assert "ResumeLimitReached" in str(written[0])
    else:
        assert await go is False and written == []
