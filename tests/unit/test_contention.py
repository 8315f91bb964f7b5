"""`agentry_common.contention`: what is retried, what is not, and what the caller sees at the end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from agentry_common import contention
from agentry_common.contention import Contended, KeyedLocks, is_contention, transact

pytestmark = pytest.mark.unit


class Client:
    def __init__(self) -> None:
        self.attempts: list[int] = []

    def transaction(self, max_attempts: int) -> object:
        self.attempts.append(max_attempts)
        return object()


def exhausted() -> ValueError:
    """What the library raises when every commit of a transaction aborted."""
    try:
        raise gexc.Aborted("conflict")
    except gexc.Aborted as exc:
        try:
            raise ValueError("Failed to commit transaction in 20 attempts.") from exc
        except ValueError as outer:
            return outer


def test_only_aborts_and_the_librarys_exhaustion_count_as_contention() -> None:
    assert is_contention(gexc.Aborted("x"))
    assert is_contention(exhausted())
    assert not is_contention(ValueError("the caller's own"))
    assert not is_contention(gexc.NotFound("x"))


def test_contention_is_retried_until_the_transaction_commits() -> None:
    client, failures = Client(), [gexc.Aborted("read met a lock"), exhausted()]

    async def txn(_: Any) -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert asyncio.run(transact(client, txn, "a doc", attempts=7, pause=0.001)) == "done"
    assert client.attempts == [7, 7, 7]


def test_other_errors_pass_through_at_once() -> None:
    client = Client()

    async def txn(_: Any) -> None:
        raise ValueError("a problem of the transaction's own")

    with pytest.raises(ValueError, match="of the transaction's own"):
        asyncio.run(transact(client, txn, "a doc", pause=0.001))
    assert len(client.attempts) == 1


def test_contention_that_never_ends_is_reported_by_name() -> None:
    client = Client()

    async def txn(_: Any) -> None:
        raise exhausted()

    with pytest.raises(Contended, match="the stream slots of a user is too busy"):
        asyncio.run(transact(client, txn, "the stream slots of a user", pause=0.001))
    assert len(client.attempts) == contention.ROUNDS


def test_one_lock_per_key_while_it_is_used() -> None:
    locks = KeyedLocks()
    first = locks("a")
    assert locks("a") is first and locks("b") is not first


def test_a_processs_transactions_on_one_key_take_turns() -> None:
    locks, inside, most = KeyedLocks(), 0, 0

    async def txn(_: Any) -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.01)
        inside -= 1

    async def main() -> None:
        client = Client()
        await asyncio.gather(*(transact(client, txn, "a doc", locks("k")) for _ in range(4)))

    asyncio.run(main())
    assert most == 1
