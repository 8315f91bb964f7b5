"""The chart's operator.cloudScheduler values become the operator's Cloud Scheduler settings."""

from __future__ import annotations

import pytest

from agentry_operator.backends.cloudscheduler import CloudSchedulerSettings
from agentry_operator.settings import Settings
from tests.unit.chart.render import RenderError, render

pytestmark = pytest.mark.unit

INVOKER = "agentry-scheduler@my-agentry-project.iam.gserviceaccount.com"
ON = {
    "gcp__projectId": "my-agentry-project",
    "operator__cloudScheduler__location": "europe-west1",
    "operator__cloudScheduler__targetUrl": "https://agentry.example.com",
    "operator__cloudScheduler__serviceAccount": INVOKER,
}


def operator_env(**values: str) -> dict[str, str]:
    objs = render(**values)
    deployment = next(o for o in objs if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_off_by_default() -> None:
    assert not any(k.startswith("AGENTRY_CLOUD_SCHEDULER_") for k in operator_env())


def test_on_renders_settings_the_operator_accepts() -> None:
    env = operator_env(**ON, operator__cloudScheduler__audience="agentry-api")
    fields = {k.removeprefix("AGENTRY_").lower(): v for k, v in env.items() if k.startswith("AGENTRY_CLOUD")}
    config = Settings(cloud_scheduler_project=env["GOOGLE_CLOUD_PROJECT"], **fields)
    settings = CloudSchedulerSettings.from_config(config)
    assert settings.parent == "projects/my-agentry-project/locations/europe-west1"
    assert settings.path == "/api/agents/{namespace}/{name}/runs" and settings.audience == "agentry-api"


@pytest.mark.parametrize(
    ("drop", "error"),
    [
        ("gcp__projectId", "needs gcp.projectId"),
        ("operator__cloudScheduler__targetUrl", "needs operator.cloudScheduler.targetUrl"),
        ("operator__cloudScheduler__serviceAccount", "needs operator.cloudScheduler.serviceAccount"),
    ],
)
def test_incomplete_settings_fail_the_render(drop: str, error: str) -> None:
    with pytest.raises(RenderError, match=error):
        render(**{k: v for k, v in ON.items() if k != drop})


def test_schema_refuses_a_bad_invoker() -> None:
    with pytest.raises(RenderError, match="serviceAccount"):
        render(**{**ON, "operator__cloudScheduler__serviceAccount": "not-an-email"})
