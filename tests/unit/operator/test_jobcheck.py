"""The sample Job the webhook dry-runs for an Agent: the Job a manual run without input would get."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from agentry_common.naming import job_name, token_secret_name
from agentry_operator.builders.job import ANNOTATION_AGENT, ANNOTATION_INPUT
from agentry_operator.jobcheck import PLACEHOLDER_UID, job_errors, sample_job
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

AGENT: dict[str, Any] = {
    "metadata": {"name": "digest", "labels": {"team": "a"}},
    "spec": {
        "instructions": "Summarise.",
        "model": {"name": "claude-sonnet-4-5"},
        "resources": {"requests": {"memory": "2Gi"}},
        "schedule": {"cron": "0 7 * * *", "input": "today's news"},
    },
}


def _secret_refs(job: dict[str, Any]) -> set[str]:
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}


def test_the_sample_carries_what_the_agent_puts_into_a_job() -> None:
    job = sample_job(AGENT, "team-a", Settings())
    assert job["metadata"]["namespace"] == "team-a"
    assert job["metadata"]["name"] == job_name("digest", PLACEHOLDER_UID)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["memory"] == "2Gi"  # what the API server will judge
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert "Summarise." in annotations[ANNOTATION_AGENT]
    assert annotations[ANNOTATION_INPUT] == "today's news"  # a scheduled run's input counts too


def test_a_governed_sample_references_its_token_secret_like_a_run() -> None:
    config = Settings(gateway_url="http://gateway.agentry:8080")
    job = sample_job(AGENT, "team-a", config)
    assert token_secret_name(job["metadata"]["name"]) in _secret_refs(job)
    assert not _secret_refs(sample_job(AGENT, "team-a", Settings()))


def test_a_nameless_agent_of_generate_name_gets_a_sample_too() -> None:
    agent = {"metadata": {"generateName": "digest-"}, "spec": AGENT["spec"]}
    assert sample_job(agent, "team-a", Settings())["metadata"]["name"].startswith("digest-")


async def test_an_unreachable_api_server_admits_the_agent_unchecked() -> None:
    """lightkube's transport errors (httpx2) are 'not conclusive', not an exception out of the webhook."""
    with socket.socket() as held:  # a port that refuses connections: bound, never listening
        held.bind(("127.0.0.1", 0))
        server = f"http://127.0.0.1:{held.getsockname()[1]}"
        config = KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
        client = AsyncClient(config, namespace="team-a")
        try:
            assert await job_errors(client, AGENT, "team-a", Settings()) == []
        finally:
            await client.close()
