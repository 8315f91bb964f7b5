"""Fixtures of the GCP tier: the local Secret Manager / Cloud Scheduler gRPC fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentry_testing.gcp_fakes import GcpFakes


@pytest.fixture
def gcp() -> Iterator[GcpFakes]:
    with GcpFakes() as fakes:
        yield fakes
