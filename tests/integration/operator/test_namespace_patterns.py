"""Namespace patterns are resolved by the operator's own watch (agentry_operator/controller/
namespaces.py), against the real API server: a namespace created after the operator started that
matches gets its Executions run, one that does not match is left alone, and a deleted one's watches
stop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace

from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, own_control_plane
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

AGENT = {"instructions": "Say hello.", "model": {"name": "claude-sonnet-4-5"}}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("patterns-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def op(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    workdir: Path = tmp_path_factory.mktemp("patterns-operator")
    env = {"AGENTRY_WEBHOOK_ENABLED": "false", "AGENTRY_WATCH_NAMESPACES": '["team-*"]'}
    proc = OperatorProcess(plane, workdir, env, scope=()).launch()  # the patterns from the setting
    yield proc
    proc.proc.stop()


def _run(client: Client, ns: str) -> None:
    client.create(Agent.from_dict({"metadata": {"name": "hello", "namespace": ns}, "spec": AGENT}))
    body = {"metadata": {"name": "run", "namespace": ns}, "spec": {"agentRef": {"name": "hello"}}}
    client.create(Execution.from_dict(body))


def _status(client: Client, ns: str) -> dict[str, Any]:
    return dict(client.get(Execution, "run", namespace=ns).status or {})


def test_a_matching_namespace_made_later_is_watched_and_another_is_not(
    plane: ControlPlane, op: OperatorProcess
) -> None:
    with plane_client(plane) as client:
        other = make_namespace(client, "other")
        team = make_namespace(client, "team")  # both made after the operator started
        _run(client, other)
        _run(client, team)
        job = eventually(lambda: _status(client, team).get("jobName"), what="the matching run's Job")
        assert client.get(Job, job, namespace=team)
        # The matching run has its Job; the other run, created before it, was never looked at.
        assert _status(client, other) == {}
        assert list(client.list(Job, namespace=other)) == []

        client.delete(Namespace, team)
        log = op.workdir / "operator.log"
        eventually(
            lambda: f"namespace {team} deleted" in log.read_text(errors="replace"),
            what="the deleted namespace's watches stopped",
        )
        assert op.proc.alive()  # and the operator goes on
