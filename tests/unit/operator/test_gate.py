"""The operator client's bound on requests in flight (gate.py)."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from agentry_operator.controller.gate import GatedTransport

pytestmark = pytest.mark.unit


class Counting(httpx2.AsyncBaseTransport):
    """Answers after a pause and counts how many requests it holds at once."""

    def __init__(self, fail: bool = False) -> None:
        self.now = self.most = 0
        self.fail = fail

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.01)
            if self.fail:
                raise httpx2.ConnectError("refused", request=request)
            return httpx2.Response(200, content=b"{}")
        finally:
            self.now -= 1


async def test_no_more_than_the_limit_in_flight_and_every_slot_comes_back() -> None:
    inner = Counting()
    async with httpx2.AsyncClient(transport=GatedTransport(inner, limit=4), base_url="http://k") as client:
        answers = await asyncio.gather(*(client.get("/x") for _ in range(40)))
        assert all(a.status_code == 200 for a in answers)
        assert inner.most == 4
        # All 4 slots are free again: 4 more go through together.
        await asyncio.gather(*(client.get("/x") for _ in range(4)))
        assert inner.most == 4


async def test_a_failed_request_gives_its_slot_back() -> None:
    inner = Counting(fail=True)
    async with httpx2.AsyncClient(transport=GatedTransport(inner, limit=2), base_url="http://k") as client:
        for _ in range(5):  # more failures than slots: none leaked
            with pytest.raises(httpx2.ConnectError):
                await client.get("/x")
