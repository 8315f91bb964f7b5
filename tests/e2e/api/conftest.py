"""Browser tests reuse the API integration fixtures (real servers, the API in a thread)."""

from __future__ import annotations

from tests.integration.api.conftest import api, operator_ready

__all__ = ["api", "operator_ready"]
