"""Every dependency of every route is `async def`: FastAPI runs a plain `def` dependency in its thread
pool, two thread switches on every request that uses it (found on the read path: `get_state`)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from agentry_api.main import create_app
from agentry_api.settings import Settings

pytestmark = pytest.mark.unit


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute | APIWebSocketRoute]:
    """The app's routes, through the routers it includes."""
    for route in routes:
        if isinstance(route, APIRoute | APIWebSocketRoute):
            yield route
        included = getattr(route, "original_router", None) or getattr(route, "routes", None)
        if included is not None:
            yield from api_routes(getattr(included, "routes", included))


def dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from dependencies(sub)


def test_no_route_runs_a_dependency_in_the_thread_pool() -> None:
    app = create_app(Settings(google_cloud_project="unit", session_secret="unit-secret"))
    routes = list(api_routes(app.routes))
    assert len(routes) > 30
    sync = {
        f"{route.path}: {sub.call.__qualname__}"
        for route in routes
        for sub in dependencies(route.dependant)
        if sub.call is not None and not inspect.iscoroutinefunction(sub.call)
    }
    assert not sync, sorted(sync)
    endpoints = {r.path for r in routes if not inspect.iscoroutinefunction(r.endpoint)}
    assert not endpoints, sorted(endpoints)
