"""Root conftest: every test belongs to exactly one tier (unit, integration, e2e)."""

from __future__ import annotations

import os

import pytest

from agentry_common.resources import loaded_kinds, prime_decoders
from agentry_localcluster.prepare import prepare
from agentry_localcluster.procs import ServerError

TIERS = ("unit", "integration", "e2e")

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.operator", "tests.fixtures.cpu"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        if len(tiers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: mark the test with exactly one tier of {TIERS}, got {tiers}"
            )
    # Longest first (a stable sort: modules stay whole and in order): xdist hands out modules in this
    # order (with --no-loadscope-reorder, in pyproject's addopts), so the run does not end with one
    # worker alone on minutes of waiting.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """One-time builds for the collected tiers, before the first test: never inside a test's timeout.

    `make test` has done them already (`make prepare`), so this is a cache check there. Set
    AGENTRY_NO_BUILD=1 to skip even the check (the fixtures then use what is cached).

    First, lightkube's decoders of every kind the tests import: watches, kubelet stand-ins and
    creators decode them on threads of their own (agentry_common.resources.prime_decoders).
    """
    prime_decoders(loaded_kinds())
    if session.config.option.collectonly or os.environ.get("AGENTRY_NO_BUILD"):
        return
    tiers = {t for item in session.items for t in TIERS if item.get_closest_marker(t)}
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        try:
            prepare(tiers)
        except ServerError as exc:
            pytest.exit(f"one-time builds failed: {exc}", returncode=3)
