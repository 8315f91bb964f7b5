"""Root conftest: every test belongs to exactly one tier (unit, integration, e2e)."""

from __future__ import annotations

import pytest

TIERS = ("unit", "integration", "e2e")

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.operator"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        if len(tiers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: mark the test with exactly one tier of {TIERS}, got {tiers}"
            )
