"""Schedule semantics on a real control plane (kube-apiserver + the real CronJob controller): catch-up
after the operator was down, pauseOnFailure, and an edit that fires no spurious run."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import CronJob
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from agentry_common.naming import cronjob_name, job_name, scheduled_execution_name
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import eventually, job_pod, play_kubelet
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = [pytest.mark.integration, pytest.mark.long]
SPEC = {"instructions": "x", "model": {"name": "m"}}


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Our own control plane: stopping our operator leaves no other one acting on these Agents."""
    with own_control_plane(tmp_path_factory.mktemp("sched") / "kube") as plane:
        yield plane


@pytest.fixture
def client(own_plane: ControlPlane) -> Iterator[Client]:
    with plane_client(own_plane, "sched-test") as c:
        yield c


@pytest.fixture
def op(own_plane: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    proc = start_operator(own_plane, tmp_path)
    yield proc
    proc.proc.stop()


def far_minute() -> int:
    """A minute of the hour 30 minutes from now: its fire times are never near now or a window edge."""
    return (dt.datetime.now(dt.UTC).minute + 30) % 60


def create_agent(client: Client, ns: str, schedule: dict[str, Any]) -> Any:
    agent = Agent.from_dict(
        {"metadata": {"name": "a", "namespace": ns}, "spec": {**SPEC, "schedule": schedule}}
    )
    return eventually(lambda: _admitted(client, agent), 60, "the webhook admitting the Agent")


def _admitted(client: Client, obj: Any) -> Any:
    try:
        return client.create(obj)
    except ApiError as exc:
        if "failed calling webhook" in str(exc):
            return None
        raise


def agent_status(client: Client, ns: str) -> dict[str, Any]:
    return dict(client.get(Agent, "a", namespace=ns).status or {})


def scheduled_runs(client: Client, ns: str) -> dict[str, str]:
    runs = client.list(Execution, namespace=ns)
    return {r.metadata.name: r.spec["scheduledTime"] for r in runs if r.spec.get("trigger") == "Schedule"}


def last_fire_times(minute: int, now: dt.datetime, count: int) -> list[dt.datetime]:
    """The last `count` times at `minute` past an hour (UTC) before `now`, oldest first."""
    newest = now.replace(minute=minute, second=0, microsecond=0)
    newest -= dt.timedelta(hours=1) if newest > now else dt.timedelta(0)
    return [newest - dt.timedelta(hours=i) for i in reversed(range(count))]


def stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_missed_runs_in_the_window_start_once_each_after_downtime(
    client: Client, op: OperatorProcess
) -> None:
    ns = make_namespace(client, "catchup")
    minute = far_minute()
    schedule = {
        "cron": f"{minute} * * * *",
        "concurrencyPolicy": "Allow",
        "catchupWindowSeconds": 3 * 3600,
        "maxCatchupRuns": 5,
    }
    create_agent(client, ns, schedule)
    eventually(lambda: agent_status(client, ns).get("scheduleState"), what="scheduleState")

    # Down for 10 hours: the status is as the operator left it then.
    op.proc.stop()
    ten_hours_ago = stamp(dt.datetime.now(dt.UTC) - dt.timedelta(hours=10))
    back = {"status": {"scheduleState": {"since": ten_hours_ago, "through": ten_hours_ago}}}
    client.patch(Agent.Status, "a", back, namespace=ns, patch_type=PatchType.MERGE)
    op.proc.start()
    op.wait_healthy()

    want = last_fire_times(minute, dt.datetime.now(dt.UTC), 3)
    eventually(lambda: len(scheduled_runs(client, ns)) >= 3, 60, "the in-window runs")
    st = eventually(
        lambda: (s := agent_status(client, ns)).get("scheduleState", {}).get("skippedRuns") and s,
        what="skipped",
    )
    runs = scheduled_runs(client, ns)
    assert sorted(runs.values()) == [stamp(t) for t in want]
    assert set(runs) == {scheduled_execution_name("a", int(t.timestamp())) for t in want}
    state = st["scheduleState"]
    assert state["skippedRuns"] == 7 and state["lastSkipped"]["count"] == 7  # 10 missed, 3 in the window
    assert state["through"] == stamp(want[-1])
    reasons = {e.reason for e in client.list(Event, namespace=ns) if e.involvedObject.name == "a"}
    assert {"CatchupStarted", "CatchupSkipped"} <= reasons

    op.restart()  # once each: a restart finds nothing more to start
    create_manual_and_wait_refresh(client, ns)
    assert scheduled_runs(client, ns) == runs


def create_manual_and_wait_refresh(client: Client, ns: str, name: str = "manual") -> None:
    """A manual run: the Agent's totals count it (and every other run) once the operator refreshed the
    Agent after it."""
    manual = {"metadata": {"name": name, "namespace": ns}, "spec": {"agentRef": {"name": "a"}}}
    client.create(Execution.from_dict(manual))
    count = len(list(client.list(Execution, namespace=ns)))
    eventually(
        lambda: (agent_status(client, ns).get("totals") or {}).get("executions") == count, 60, "a refresh"
    )


def fail_scheduled_run(client: Client, ns: str, name: str, when: dt.datetime) -> None:
    ex = client.create(
        Execution.from_dict(
            {
                "metadata": {"name": name, "namespace": ns},
                "spec": {"agentRef": {"name": "a"}, "trigger": "Schedule", "scheduledTime": stamp(when)},
            }
        )
    )
    pod = job_pod(client, ns, job_name(name, ex.metadata.uid))
    play_kubelet(client, pod, "Failed", 1, {"stopReason": "RuntimeError", "summary": ""})
    eventually(lambda: (client.get(Execution, name, namespace=ns).status or {}).get("phase") == "Failed")


def paused(client: Client, ns: str) -> dict[str, Any] | None:
    conditions = agent_status(client, ns).get("conditions") or []
    return next((c for c in conditions if c["type"] == "SchedulePaused"), None)


def test_pause_on_failure_suspends_with_a_condition_until_resumed(
    client: Client, op: OperatorProcess
) -> None:
    ns = make_namespace(client, "pause")
    agent = create_agent(
        client,
        ns,
        {
            "cron": f"{far_minute()} * * * *",
            "concurrencyPolicy": "Allow",  # the manual runs below stay Pending (no kubelet)
            "pauseOnFailure": {"consecutiveFailures": 2},
        },
    )
    since = eventually(lambda: agent_status(client, ns).get("scheduleState", {}).get("since"), what="since")
    start = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    fail_scheduled_run(client, ns, "tick1", start + dt.timedelta(seconds=1))
    create_manual_and_wait_refresh(client, ns, "between")  # one failure: not yet
    assert client.get(Agent, "a", namespace=ns).spec["schedule"].get("suspend") is not True
    fail_scheduled_run(client, ns, "tick2", start + dt.timedelta(seconds=2))

    eventually(
        lambda: client.get(Agent, "a", namespace=ns).spec["schedule"].get("suspend") is True, 60, "suspend"
    )
    cond = eventually(lambda: paused(client, ns), what="SchedulePaused")
    assert cond["status"] == "True" and cond["reason"] == "ConsecutiveFailures"
    assert "2 consecutive failed" in cond["message"] and "suspend false" in cond["message"]
    cj = cronjob_name("a", agent.metadata.uid)
    eventually(lambda: client.get(CronJob, cj, namespace=ns).spec.suspend, what="CronJob suspended")

    client.patch(
        Agent, "a", {"spec": {"schedule": {"suspend": False}}}, namespace=ns, patch_type=PatchType.MERGE
    )
    eventually(lambda: (paused(client, ns) or {}).get("reason") == "ScheduleResumed", what="resumed")
    create_manual_and_wait_refresh(client, ns, "after")  # the old failures no longer count
    assert client.get(Agent, "a", namespace=ns).spec["schedule"]["suspend"] is False
    assert agent_status(client, ns)["scheduleState"]["consecutiveFailures"] == 0


def test_a_schedule_edit_fires_no_spurious_run(client: Client, op: OperatorProcess) -> None:
    ns = make_namespace(client, "edit")
    window = {"catchupWindowSeconds": 3600, "maxCatchupRuns": 10, "concurrencyPolicy": "Allow"}
    agent = create_agent(client, ns, {"cron": "0 0 1 1 *", **window})  # yearly: nothing to catch up
    name = cronjob_name("a", agent.metadata.uid)
    old = eventually(lambda: client.get(CronJob, name, namespace=ns), what="CronJob")
    before = eventually(lambda: agent_status(client, ns).get("scheduleState"), what="scheduleState")
    # The watermark as after two hours of downtime: the new cron's recent time is past it.
    two_hours_ago = stamp(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    back = {"status": {"scheduleState": {"since": two_hours_ago, "through": two_hours_ago}}}
    client.patch(Agent.Status, "a", back, namespace=ns, patch_type=PatchType.MERGE)

    # The new cron fired 5 minutes ago, inside the catch-up window: it must not run now.
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).minute
    edit = {"spec": {"schedule": {"cron": f"{recent} * * * *"}}}
    client.patch(Agent, "a", edit, namespace=ns, patch_type=PatchType.MERGE)
    eventually(
        lambda: agent_status(client, ns).get("scheduleState", {}).get("signature") != before["signature"],
        what="the edit taken up",
    )
    new = eventually(
        lambda: (cj := client.get(CronJob, name, namespace=ns)).metadata.uid != old.metadata.uid and cj,
        what="a new CronJob",
    )
    assert new.spec.schedule == f"{recent} * * * *"
    assert new.status is None or new.status.lastScheduleTime is None
    create_manual_and_wait_refresh(client, ns)
    assert scheduled_runs(client, ns) == {}
    upcoming = agent_status(client, ns)["upcomingRuns"]
    assert len(upcoming) == 5 and all(t[14:16] == f"{recent:02d}" for t in upcoming)


def test_backfill_starts_a_range_once_and_refuses_a_wide_one(client: Client, op: OperatorProcess) -> None:
    ns = make_namespace(client, "backfill")
    minute = far_minute()
    day_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    want = last_fire_times(minute, day_ago, 3)
    backfill = {"start": stamp(want[0]), "end": stamp(want[-1] + dt.timedelta(minutes=1))}
    create_agent(
        client, ns, {"cron": f"{minute} * * * *", "concurrencyPolicy": "Allow", "backfill": backfill}
    )
    eventually(lambda: len(scheduled_runs(client, ns)) >= 3, 60, "the backfill runs")
    runs = scheduled_runs(client, ns)
    assert sorted(runs.values()) == [stamp(t) for t in want]
    # the runs are created before the handler's status patch lands
    key = f"{backfill['start']}/{backfill['end']}"
    eventually(
        lambda: agent_status(client, ns).get("scheduleState", {}).get("backfilled") == key,
        what="status.scheduleState.backfilled",
    )
    create_manual_and_wait_refresh(client, ns)  # a later refresh starts nothing again
    assert scheduled_runs(client, ns) == runs

    wide = {"start": stamp(day_ago - dt.timedelta(hours=12)), "end": stamp(day_ago)}
    with pytest.raises(ApiError) as refused:
        client.patch(
            Agent, "a", {"spec": {"schedule": {"backfill": wide}}}, namespace=ns, patch_type=PatchType.MERGE
        )
    assert refused.value.status.code in (400, 403, 422) and "spec.schedule.backfill" in str(refused.value)


def test_the_operator_backend_fires_each_time_once_also_across_a_restart(
    client: Client, op: OperatorProcess
) -> None:
    """backend: Operator: no CronJob, no tick pod; the operator's timer creates each time's run, and
    after downtime across a fire time the newest missed one starts once."""
    ns = make_namespace(client, "optimer")
    create_agent(client, ns, {"cron": "* * * * *", "backend": "Operator", "concurrencyPolicy": "Allow"})
    first = eventually(lambda: scheduled_runs(client, ns), 90, "the first fire time's run")
    assert list(client.list(CronJob, namespace=ns)) == []
    ((name, when),) = first.items()
    fired = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    assert fired.second == 0 and name == scheduled_execution_name("a", int(fired.timestamp()))

    op.proc.stop()  # down across the next fire time
    missed = fired + dt.timedelta(minutes=1)
    time.sleep(max((missed - dt.datetime.now(dt.UTC)).total_seconds(), 0) + 2)
    op.proc.start()
    op.wait_healthy()
    restarted = dt.datetime.now(dt.UTC)
    runs = eventually(lambda: len(r := scheduled_runs(client, ns)) >= 2 and r, 60, "the missed run")
    times = sorted(dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in runs.values())
    assert times[0] == fired and all(t.second == 0 for t in times)
    assert missed <= times[1] <= restarted  # the newest time missed while down, started once
    assert len(set(times)) == len(times) == len(runs)
