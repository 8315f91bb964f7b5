"""kopf's session: the operator's login bounds kopf's connections (agentry_operator/session.py)."""

from __future__ import annotations

import kopf
import pytest

from agentry_operator import main  # its decorators register the resource handlers
from agentry_operator.handlers.workflow import register as register_workflows
from agentry_operator.registries import RECONCILE
from agentry_operator.run_events import register as register_runs
from agentry_operator.session import REQUESTS, WATCHED_KINDS, bounded, connection_limit, login_handler

pytestmark = pytest.mark.unit


def _kinds(registry: kopf.OperatorRegistry) -> set[tuple[str | None, str | None]]:
    parts = (registry._watching, registry._changing, registry._spawning, registry._indexing)
    return {(s.group, s.plural or s.any_name) for part in parts for s in part.get_all_selectors()}


def test_every_watched_kind_has_a_stream_within_the_bound() -> None:
    """A kind watched by kopf beyond WATCHED_KINDS would leave kopf's requests no connection: raise it.
    The runs (Executions, Jobs, Pods) are the operator's own watches, in every mode."""
    assert main.executions_known is not None
    workflows, runs = kopf.OperatorRegistry(), kopf.OperatorRegistry()
    register_workflows(workflows)
    register_runs(runs, ["team-*"])  # patterns too: the operator resolves them for its own watches
    kinds = _kinds(RECONCILE) | _kinds(workflows) | _kinds(runs)
    plurals = {plural for _, plural in kinds}
    assert "agents" in plurals and not plurals & {"executions", "jobs", "pods"}
    assert len(kinds) <= WATCHED_KINDS


def test_the_bound_grows_with_the_namespaces_and_patterns_are_unbounded() -> None:
    assert connection_limit(None) == connection_limit([]) == WATCHED_KINDS + REQUESTS
    assert connection_limit(["a", "b", "c"]) == 3 * WATCHED_KINDS + REQUESTS
    assert connection_limit(["team-*"]) == 0
    assert connection_limit(["a", "b?"]) == 0


async def test_the_session_is_kopfs_with_a_bounded_pool() -> None:
    info = kopf.ConnectionInfo(
        server="https://127.0.0.1:6443", token="t0k", scheme="Bearer", default_namespace="ns", priority=7
    )
    context = bounded(info, 24)
    session = context.aiohttp_session
    try:
        assert session.connector is not None and session.connector.limit == 24
        assert session.headers["Authorization"] == "Bearer t0k"
        assert (context.server, context.default_namespace, context.priority) == (info.server, "ns", 7)
    finally:
        await session.close()


async def test_a_pattern_keeps_kopfs_own_session(monkeypatch: pytest.MonkeyPatch) -> None:
    info = kopf.ConnectionInfo(server="https://127.0.0.1:6443", token="t")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.setattr(kopf, "login_with_kubeconfig", lambda **_: info)
    assert await login_handler(0)() is info
    context = await login_handler(30)()
    assert isinstance(context, kopf.AiohttpSession)
    await context.aiohttp_session.close()
