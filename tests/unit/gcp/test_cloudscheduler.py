"""Cloud Scheduler backend, pure parts: settings, job names, the job built from an Agent, the diff."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re
import subprocess
import sys
from typing import Any

import pytest
from google.cloud import scheduler_v1

from agentry_operator.backends import (
    BackendError,
    cloud_scheduler_backend,
    cloud_scheduler_missing,
    is_cloud_ref,
    needs_cloud_cleanup,
)
from agentry_operator.backends.cloudscheduler import (
    OWNED_FIELDS,
    CloudSchedulerSettings,
    build_job,
    changed_fields,
    job_id,
    unix_cron,
)
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

SETTINGS: dict[str, Any] = {
    "cloud_scheduler_project": "proj-1",
    "cloud_scheduler_location": "europe-west1",
    "cloud_scheduler_target_url": "https://agentry.example.com/",
    "cloud_scheduler_service_account": "scheduler@proj-1.iam.gserviceaccount.com",
}


def agent(**schedule: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "weekly.news", "namespace": "team-a", "uid": "0b6f-uid"},
        "spec": {
            "instructions": "x",
            "model": {"name": "m"},
            "schedule": {
                "cron": "0 8 * * 1",
                "timeZone": "Asia/Seoul",
                "backend": "CloudScheduler",
                **schedule,
            },
        },
    }


def settings(**overrides: Any) -> CloudSchedulerSettings:
    return CloudSchedulerSettings.from_config(Settings(**{**SETTINGS, **overrides}))


def test_settings_name_what_is_missing() -> None:
    config = Settings(cloud_scheduler_location="europe-west1")
    missing = cloud_scheduler_missing(config)
    assert "AGENTRY_CLOUD_SCHEDULER_TARGET_URL" in missing
    assert "AGENTRY_CLOUD_SCHEDULER_SERVICE_ACCOUNT" in missing
    assert "AGENTRY_CLOUD_SCHEDULER_LOCATION" not in missing
    with pytest.raises(BackendError) as err:
        CloudSchedulerSettings.from_config(config)
    assert err.value.reason == "CloudSchedulerNotConfigured" and err.value.retry_seconds is None
    assert "AGENTRY_CLOUD_SCHEDULER_TARGET_URL" in err.value.message


def test_project_falls_back_to_google_cloud_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-google")
    assert Settings().cloud_scheduler_project == "from-google"
    monkeypatch.setenv("AGENTRY_CLOUD_SCHEDULER_PROJECT", "explicit")
    assert Settings().cloud_scheduler_project == "explicit"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"cloud_scheduler_path": "api/{name}"}, "must start with /"),
        ({"cloud_scheduler_path": "/api/{agent}/runs"}, "{namespace} and {name}"),
        ({"cloud_scheduler_target_url": "agentry.example.com"}, "http(s) URL"),
    ],
)
def test_bad_settings_are_refused(override: dict[str, Any], needle: str) -> None:
    with pytest.raises(BackendError) as err:
        settings(**override)
    assert needle in err.value.message


def test_job_id_is_deterministic_valid_and_tied_to_the_uid() -> None:
    first = job_id("team-a", "weekly.news", "uid-1")
    assert first == job_id("team-a", "weekly.news", "uid-1")
    assert first.startswith("agentry-team-a-weekly_news-")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,500}", first)
    assert job_id("team-a", "weekly.news", "uid-2") != first  # a re-created Agent gets a new job
    assert len(job_id("n" * 63, "a" * 253, "u")) <= 500


@pytest.mark.parametrize(
    ("expr", "cron"),
    [
        ("@daily", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("*/5 * * * *", "*/5 * * * *"),
    ],
)
def test_macros_become_unix_cron(expr: str, cron: str) -> None:
    assert unix_cron(expr) == cron


def test_build_job_calls_the_api_with_an_oidc_token() -> None:
    job = build_job(agent(), settings())
    assert job.name == "projects/proj-1/locations/europe-west1/jobs/" + job_id(
        "team-a", "weekly.news", "0b6f-uid"
    )
    assert job.schedule == "0 8 * * 1" and job.time_zone == "Asia/Seoul"
    target = job.http_target
    assert target.uri == "https://agentry.example.com/api/agents/team-a/weekly.news/runs"
    assert target.http_method == scheduler_v1.HttpMethod.POST
    assert dict(target.headers) == {"Content-Type": "application/json"}
    assert json.loads(target.body) == {"trigger": "Schedule"}
    assert target.oidc_token.service_account_email == "scheduler@proj-1.iam.gserviceaccount.com"
    assert target.oidc_token.audience == "https://agentry.example.com"  # default: the target URL
    assert job.retry_config.retry_count == 3
    assert job.attempt_deadline == dt.timedelta(seconds=30)
    assert "team-a/weekly.news" in job.description


def test_build_job_honours_path_audience_and_quotes_segments() -> None:
    s = settings(cloud_scheduler_path="/hooks/{namespace}:{name}", cloud_scheduler_audience="agentry-api")
    body = agent()
    body["metadata"]["name"] = "a b"
    job = build_job(body, s)
    assert job.http_target.uri == "https://agentry.example.com/hooks/team-a:a%20b"
    assert job.http_target.oidc_token.audience == "agentry-api"


def test_default_time_zone_is_utc() -> None:
    body = agent()
    del body["spec"]["schedule"]["timeZone"]
    assert build_job(body, settings()).time_zone == "UTC"


def test_changed_fields_is_the_update_mask() -> None:
    s = settings()
    current = build_job(agent(), s)
    assert changed_fields(current, build_job(agent(), s)) == []
    assert changed_fields(current, build_job(agent(cron="0 9 * * 1"), s)) == ["schedule"]
    assert changed_fields(current, build_job(agent(timeZone="UTC"), s)) == ["time_zone"]
    moved = settings(cloud_scheduler_target_url="https://other.example.com")
    assert changed_fields(current, build_job(agent(), moved)) == ["http_target"]
    # Headers the service adds on its own are not a difference; output-only fields neither.
    served = copy.deepcopy(current)
    served.http_target.headers["User-Agent"] = "Google-Cloud-Scheduler"
    served.state = scheduler_v1.Job.State.PAUSED
    assert changed_fields(served, current) == []
    assert changed_fields(scheduler_v1.Job(name=current.name), current) == list(OWNED_FIELDS)


def test_cloud_refs_and_when_the_finalizer_is_needed() -> None:
    ref = "projects/p/locations/l/jobs/j"
    assert is_cloud_ref(ref) and not is_cloud_ref("CronJob/x") and not is_cloud_ref(None)
    assert needs_cloud_cleanup(agent())
    assert not needs_cloud_cleanup(agent(), enabled=False)  # no backend here: no job can exist
    assert needs_cloud_cleanup({**agent(), "status": {"scheduleRef": ref}}, enabled=False)
    cron = {"metadata": {}, "spec": {"schedule": {"cron": "* * * * *"}}}
    assert not needs_cloud_cleanup(cron)
    assert not needs_cloud_cleanup({"metadata": {}, "spec": {}})
    # Moved away from Cloud Scheduler, old job not deleted yet: keep the finalizer.
    assert needs_cloud_cleanup({**cron, "status": {"scheduleRef": ref}})
    assert not needs_cloud_cleanup({**cron, "status": {"scheduleRef": "CronJob/agentry-x"}})


def test_backend_only_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test")
    with caplog.at_level(logging.WARNING):
        assert cloud_scheduler_backend(Settings(cloud_scheduler_project="p"), log) is None
    assert caplog.records == []  # GOOGLE_CLOUD_PROJECT alone is not an attempt at this backend
    with caplog.at_level(logging.WARNING):
        assert cloud_scheduler_backend(Settings(cloud_scheduler_location="l"), log) is None
    assert "AGENTRY_CLOUD_SCHEDULER_TARGET_URL" in caplog.text
    backend = cloud_scheduler_backend(Settings(**SETTINGS), log)
    assert backend is not None and backend.ref(agent()).startswith(
        "projects/proj-1/locations/europe-west1/jobs/"
    )


def test_operator_does_not_load_google_libraries_without_the_backend() -> None:
    code = "import sys, agentry_operator.main; print(any(m.startswith('google.cloud') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
