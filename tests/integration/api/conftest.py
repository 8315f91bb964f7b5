"""Fixtures for the API on real servers: Firestore emulator, control plane, operator, uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Namespace

from agentry_common.resources import Agent, Execution
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess
from tests.fixtures.servers import make_namespace

from .server import ApiServer, api_settings, start_api

WARM_AGENT = {"metadata": {"name": "warm"}, "spec": {"instructions": "x", "model": {"name": "m"}}}
WARM_EXECUTION = {"metadata": {"name": "warm"}, "spec": {"agentRef": {"name": "warm"}}}


@pytest.fixture(scope="session")
def operator_ready(kube_client: Client, operator: OperatorProcess) -> None:
    """Make sure the operator reconciles before API tests rely on it.

    Right after the CRDs are created, the API server answers watches with "storage is
    (re)initializing"; the operator's watch then stays silent until its server timeout (300 s). If the
    warm-up Execution is not picked up in 20 s, the operator is restarted once (reported upstream).
    """
    ns = make_namespace(kube_client, "t")  # the operator fixture watches t-* namespaces
    try:
        kube_client.create(Agent.from_dict({**WARM_AGENT, "metadata": {"name": "warm", "namespace": ns}}))
        kube_client.create(
            Execution.from_dict({**WARM_EXECUTION, "metadata": {"name": "warm", "namespace": ns}})
        )

        def reconciled() -> object:
            return (kube_client.get(Execution, "warm", namespace=ns).status or {}).get("jobName")

        try:
            eventually(reconciled, timeout=20, what="the operator to reconcile")
        except AssertionError:
            operator.restart()
            eventually(reconciled, timeout=90, what="the operator to reconcile after a restart")
    finally:
        kube_client.delete(Namespace, ns)


@pytest.fixture
def api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[ApiServer]:
    server = start_api(api_settings(firestore_project, namespace, str(kube.kubeconfig)))
    yield server
    server.stop()
