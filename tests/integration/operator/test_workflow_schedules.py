"""Workflow schedules on a real control plane with the operator process: one run per fire time of an
every-minute schedule with the operator killed at a fire time, catch-up after downtime (time faked as
test_schedule_semantics.py does: the watermark in status.scheduleState moved into the past while the
operator is down), pauseOnFailure, Forbid and Replace, and admission of bad schedules."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from agentry_common import workflows as w
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent
from agentry_operator.workflows.resources import Workflow, WorkflowRun
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = [pytest.mark.integration, pytest.mark.long]
AGENT = {"instructions": "Do the step.", "model": {"name": "claude-sonnet-4-5"}}
STEPS = [{"name": "only", "agentRef": {"name": "worker"}, "input": "go"}]


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Our own control plane: stopping our operator leaves no other one acting on these Workflows."""
    with own_control_plane(tmp_path_factory.mktemp("wfsched") / "kube") as plane:
        yield plane


@pytest.fixture
def client(own_plane: ControlPlane) -> Iterator[Client]:
    with plane_client(own_plane, "wf-sched-test") as c:
        yield c


@pytest.fixture
def op(own_plane: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    proc = start_operator(own_plane, tmp_path)
    yield proc
    proc.proc.stop()


def _admitted(client: Client, obj: Any) -> Any:
    try:
        return client.create(obj)
    except ApiError as exc:
        if "failed calling webhook" in str(exc):
            return None
        raise


def create_workflow(client: Client, ns: str, schedule: dict[str, Any], **spec: Any) -> None:
    agent = Agent.from_dict({"metadata": {"name": "worker", "namespace": ns}, "spec": AGENT})
    eventually(lambda: _admitted(client, agent), 60, "the webhook admitting the Agent")
    body = {
        "metadata": {"name": "wf", "namespace": ns},
        "spec": {"steps": STEPS, "schedule": schedule, **spec},
    }
    eventually(lambda: _admitted(client, Workflow.from_dict(body)), 60, "the webhook admitting the Workflow")


def wf_status(client: Client, ns: str) -> dict[str, Any]:
    return dict(client.get(Workflow, "wf", namespace=ns).status or {})


def scheduled_runs(client: Client, ns: str) -> dict[str, str]:
    """Scheduled WorkflowRuns: name -> spec.scheduledTime."""
    runs = client.list(WorkflowRun, namespace=ns)
    return {str(r.metadata.name): r.spec["scheduledTime"] for r in runs if r.spec.get("scheduledTime")}


def stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def far_minute() -> int:
    """A minute of the hour 30 minutes from now: its fire times are never near now or a window edge."""
    return (dt.datetime.now(dt.UTC).minute + 30) % 60


def last_fire_times(minute: int, now: dt.datetime, count: int) -> list[dt.datetime]:
    """The last `count` times at `minute` past an hour (UTC) before `now`, oldest first."""
    newest = now.replace(minute=minute, second=0, microsecond=0)
    newest -= dt.timedelta(hours=1) if newest > now else dt.timedelta(0)
    return [newest - dt.timedelta(hours=i) for i in reversed(range(count))]


def down_for_ten_hours(client: Client, ns: str, op: OperatorProcess) -> None:
    """Stop the operator and move the schedule's watermark ten hours back, as if it had been down
    since then; start it again."""
    eventually(lambda: wf_status(client, ns).get("scheduleState"), what="scheduleState")
    op.proc.stop()
    then = stamp(dt.datetime.now(dt.UTC) - dt.timedelta(hours=10))
    back = {"status": {"scheduleState": {"since": then, "through": then}}}
    client.patch(Workflow.Status, "wf", back, namespace=ns, patch_type=PatchType.MERGE)
    op.proc.start()
    op.wait_healthy()


def events(client: Client, ns: str, reason: str) -> list[str]:
    found = client.list(Event, namespace=ns, fields={"involvedObject.name": "wf"})
    return [str(e.message) for e in found if e.reason == reason]


def sleep_to_next_minute(offset: float) -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    boundary = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    time.sleep((boundary - now).total_seconds() + offset)
    return boundary


def test_every_minute_one_run_per_fire_time_with_the_operator_killed_at_a_fire_time(
    client: Client, op: OperatorProcess
) -> None:
    ns = make_namespace(client, "wfmin")
    schedule = {
        "cron": "* * * * *",
        "concurrencyPolicy": "Allow",
        "catchupWindowSeconds": 600,
        "maxCatchupRuns": 10,
    }
    create_workflow(client, ns, schedule)
    st = eventually(lambda: (s := wf_status(client, ns)).get("upcomingRuns") and s, what="upcomingRuns")
    assert len(st["upcomingRuns"]) == 5
    first = eventually(lambda: scheduled_runs(client, ns), 90, "the first scheduled run")
    # Killed 0.25 s after the next fire time (its timer fires at +0.2 s): mid-tick, or just before it.
    killed_at = sleep_to_next_minute(0.25)
    op.proc.kill()
    op.proc.start()
    op.wait_healthy()
    after = killed_at + dt.timedelta(minutes=1)
    eventually(lambda: stamp(after) in scheduled_runs(client, ns).values(), 120, "the run after the restart")
    runs = scheduled_runs(client, ns)
    times = sorted(dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in runs.values())
    start = min(dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in first.values())
    minutes = int((times[-1] - start).total_seconds() // 60) + 1
    # Every minute from the first to the last exactly once, each run named after its time.
    assert times == [start + dt.timedelta(minutes=i) for i in range(minutes)]
    assert minutes >= 3 and killed_at in times
    assert set(runs) == {w.scheduled_run_name("wf", int(t.timestamp())) for t in times}
    st = eventually(
        lambda: (s := wf_status(client, ns)).get("lastScheduleTime") == stamp(times[-1]) and s,
        what="lastScheduleTime",
    )
    assert "skippedRuns" not in st["scheduleState"]
    labels = {r.metadata.labels.get(w.LABEL_WORKFLOW) for r in client.list(WorkflowRun, namespace=ns)}
    assert labels == {"wf"}


def test_missed_fire_times_in_the_window_start_in_order_after_downtime(
    client: Client, op: OperatorProcess
) -> None:
    ns = make_namespace(client, "wfcatch")
    minute = far_minute()
    schedule = {
        "cron": f"{minute} * * * *",
        "concurrencyPolicy": "Allow",
        "catchupWindowSeconds": 3 * 3600,
        "maxCatchupRuns": 5,
        "parameters": {},
    }
    create_workflow(client, ns, schedule)
    down_for_ten_hours(client, ns, op)
    want = last_fire_times(minute, dt.datetime.now(dt.UTC), 3)
    eventually(lambda: len(scheduled_runs(client, ns)) >= 3, 60, "the in-window runs")
    st = eventually(
        lambda: (s := wf_status(client, ns)).get("scheduleState", {}).get("skippedRuns") and s, what="skipped"
    )
    runs = scheduled_runs(client, ns)
    assert sorted(runs.values()) == [stamp(t) for t in want]
    assert set(runs) == {w.scheduled_run_name("wf", int(t.timestamp())) for t in want}
    state = st["scheduleState"]
    assert state["skippedRuns"] == 7 and state["lastSkipped"]["reason"] == "CatchupWindow"
    assert state["lastSkipped"]["last"] == stamp(want[0] - dt.timedelta(hours=1))
    assert state["through"] == stamp(want[-1])
    assert eventually(lambda: events(client, ns, "CatchupSkipped"), what="the skipped event")
    # Restarted again: nothing more (the watermark is past them; the names would meet 409 anyway).
    op.proc.kill()
    op.proc.start()
    op.wait_healthy()
    eventually(lambda: wf_status(client, ns).get("upcomingRuns"), what="a tick after the restart")
    assert scheduled_runs(client, ns) == runs


def test_pause_on_failure_suspends_with_a_condition_and_resumes_without_old_runs(
    client: Client, op: OperatorProcess
) -> None:
    ns = make_namespace(client, "wfpause")
    schedule = {
        "cron": f"{far_minute()} * * * *",
        "concurrencyPolicy": "Allow",
        "catchupWindowSeconds": 3 * 3600,
        "pauseOnFailure": {"consecutiveFailures": 2},
    }
    create_workflow(client, ns, schedule, deadlineSeconds=1)  # each run fails: DeadlineExceeded
    down_for_ten_hours(client, ns, op)
    wf = eventually(
        lambda: (x := client.get(Workflow, "wf", namespace=ns)).spec["schedule"].get("suspend") and x,
        90,
        "the schedule suspended",
    )
    paused = {c["type"]: c for c in wf.status["conditions"]}["SchedulePaused"]
    assert paused["status"] == "True" and paused["reason"] == "ConsecutiveFailures"
    assert "consecutive failed scheduled runs (pauseOnFailure: 2)" in paused["message"]
    failed = [r for r in client.list(WorkflowRun, namespace=ns) if (r.status or {}).get("phase") == "Failed"]
    assert len(failed) >= 2 and not wf.status.get("upcomingRuns")
    count = len(scheduled_runs(client, ns))
    resume = {"spec": {"schedule": {"suspend": False}}}
    client.patch(Workflow, "wf", resume, namespace=ns, patch_type=PatchType.MERGE)
    st = eventually(
        lambda: (
            (s := wf_status(client, ns)).get("upcomingRuns")
            and {c["type"]: c for c in s["conditions"]}["SchedulePaused"]["status"] == "False"
            and s
        ),
        what="resumed",
    )
    assert st["scheduleState"]["consecutiveFailures"] == 0
    assert len(scheduled_runs(client, ns)) == count  # resuming starts nothing missed


def test_forbid_skips_while_a_run_is_active_and_replace_cancels_it(
    client: Client, op: OperatorProcess
) -> None:
    ns = make_namespace(client, "wfforbid")
    minute = far_minute()
    schedule = {"cron": f"{minute} * * * *", "catchupWindowSeconds": 3 * 3600}  # Forbid: the default
    create_workflow(client, ns, schedule)
    manual = {"metadata": {"name": "manual", "namespace": ns}, "spec": {"workflowRef": {"name": "wf"}}}
    client.create(WorkflowRun.from_dict(manual))
    eventually(
        lambda: (client.get(WorkflowRun, "manual", namespace=ns).status or {}).get("phase") == "Running"
    )
    down_for_ten_hours(client, ns, op)
    st = eventually(
        lambda: (s := wf_status(client, ns)).get("scheduleState", {}).get("skippedRuns") == 10 and s,
        what="all skipped",
    )
    assert st["scheduleState"]["lastSkipped"]["reason"] == "ConcurrencyPolicy"
    assert st["scheduleState"]["lastSkipped"]["count"] == 3  # the window's; 7 more were beyond it
    assert scheduled_runs(client, ns) == {}
    client.patch(
        Workflow,
        "wf",
        {"spec": {"schedule": {"concurrencyPolicy": "Replace"}}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    eventually(lambda: client.get(Workflow, "wf", namespace=ns).metadata.generation == 2)
    down_for_ten_hours(client, ns, op)
    eventually(
        lambda: (client.get(WorkflowRun, "manual", namespace=ns).status or {}).get("reason") == "Cancelled"
    )
    cancelled = client.get(WorkflowRun, "manual", namespace=ns)
    assert cancelled.spec["cancel"] is True and cancelled.status["phase"] == "Failed"
    runs = eventually(lambda: scheduled_runs(client, ns), what="the replacing run")
    newest = last_fire_times(minute, dt.datetime.now(dt.UTC), 1)[0]
    assert list(runs.values()) == [stamp(newest)]  # the newest due time only: older ones were replaced


def test_admission_refuses_a_bad_zone_cron_or_parameter_naming_the_field(
    client: Client, op: OperatorProcess
) -> None:
    ns = make_namespace(client, "wfbad")
    create_workflow(client, ns, {"cron": "0 7 * * *", "timeZone": "Asia/Seoul"})
    for schedule, field in (
        ({"cron": "0 7 * * *", "timeZone": "Mars/Olympus"}, "spec.schedule.timeZone"),
        ({"cron": "61 7 * * *"}, "spec.schedule.cron"),
        ({"cron": "0 7 * *"}, "spec.schedule.cron"),
        ({"cron": "0 7 * * *", "parameters": {"nope": "x"}}, "spec.schedule.parameters.nope"),
    ):
        body = {"metadata": {"name": "bad", "namespace": ns}, "spec": {"steps": STEPS, "schedule": schedule}}
        with pytest.raises(ApiError) as refused:
            client.create(Workflow.from_dict(body))
        assert refused.value.status.code == 422 and field in str(refused.value.status.message), schedule
    st = eventually(lambda: (s := wf_status(client, ns)).get("upcomingRuns") and s, what="upcomingRuns")
    # 07:00 in Seoul is 22:00 UTC the day before.
    assert all(t.endswith("T22:00:00Z") for t in st["upcomingRuns"])
    wide = {"cron": "0 * * * *", "backfill": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}}
    body = {"metadata": {"name": "bad", "namespace": ns}, "spec": {"steps": STEPS, "schedule": wide}}
    with pytest.raises(ApiError) as refused:
        client.create(Workflow.from_dict(body))
    assert "spec.schedule.backfill covers more than 10 runs" in str(refused.value.status.message)


def test_a_backfill_starts_each_time_of_its_range_once(client: Client, op: OperatorProcess) -> None:
    ns = make_namespace(client, "wfback")
    create_workflow(client, ns, {"cron": "30 7 * * 1-5", "timeZone": "Asia/Seoul", "suspend": True})
    eventually(lambda: wf_status(client, ns).get("scheduleState"), what="scheduleState")
    backfill = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-07T00:00:00Z"}
    patch = {"spec": {"schedule": {"backfill": backfill}}}
    client.patch(Workflow, "wf", patch, namespace=ns, patch_type=PatchType.MERGE)
    wanted = ["2026-01-01T22:30:00Z", "2026-01-04T22:30:00Z", "2026-01-05T22:30:00Z", "2026-01-06T22:30:00Z"]
    eventually(lambda: sorted(scheduled_runs(client, ns).values()) == wanted, 60, "the backfill's four runs")
    st = eventually(
        lambda: (s := wf_status(client, ns)["scheduleState"]).get("backfilled") and s, what="backfilled"
    )
    assert st["backfilled"] == "2026-01-01T00:00:00Z/2026-01-07T00:00:00Z"
    # The Event follows the status write that records the range.
    eventually(lambda: len(events(client, ns, "BackfillStarted")) == 1, what="one BackfillStarted event")
    # Another tick (a restart lists every Workflow again) starts nothing more.
    op.proc.stop()
    op.proc.start()
    op.wait_healthy()
    time.sleep(3)
    assert sorted(scheduled_runs(client, ns).values()) == wanted
