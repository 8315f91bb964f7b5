"""The memory contract's rules and the in-process store: key shapes, the value bound, search, the
entries limit within its ceiling, and stores scoped by namespace and Agent uid."""

from __future__ import annotations

import pytest

from agentry_common.memory import (
    MAX_ENTRIES_CEILING,
    MAX_VALUE_BYTES,
    key_problem,
    matches,
    store_limit,
    value_problem,
)
from agentry_gateway.memory import Full, LocalMemoryStore, Owner

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("key", ["a", "user.timezone", "notes_2026-11", "9" * 128])
def test_good_keys(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize("key", ["", "A", "with space", ".hidden", "-x", "a/b", "9" * 129, "ü"])
def test_bad_keys_say_why(key: str) -> None:
    problem = key_problem(key)
    assert problem is not None and "is not a memory key" in problem


def test_values_limits_and_search() -> None:
    assert value_problem("x" * MAX_VALUE_BYTES) is None
    assert (
        value_problem("é" * (MAX_VALUE_BYTES // 2 + 1))
        == f"{MAX_VALUE_BYTES + 2} bytes; at most {MAX_VALUE_BYTES}"
    )
    assert (store_limit(0), store_limit(5), store_limit(10**6)) == (100, 5, MAX_ENTRIES_CEILING)
    assert matches("seoul TIME", "user.timezone", "Asia/Seoul")
    assert not matches("seoul busan", "user.timezone", "Asia/Seoul")


async def test_the_local_store_bounds_and_scopes_entries() -> None:
    store = LocalMemoryStore()
    mine, theirs = Owner("ns", "uid-1", "news"), Owner("ns", "uid-2", "news")
    await store.put(mine, "a", "1", "run-1", 2)
    await store.put(mine, "b", "2", "run-1", 2)
    with pytest.raises(Full, match="holds 2 entries"):
        await store.put(mine, "c", "3", "run-2", 2)
    again = await store.put(mine, "a", "one", "run-2", 2)  # overwriting always fits
    assert (again.value, again.updated_by) == ("one", "run-2")
    assert [e.key for e in await store.entries(mine)] == ["a", "b"]
    assert await store.entries(theirs) == [] and await store.entries(Owner("other", "uid-1")) == []
    assert await store.delete(mine, "a") and not await store.delete(mine, "a")
    assert [o.agent_uid for o in await store.stores()] == ["uid-1"]
    assert await store.drop([mine, theirs]) == 1 and await store.stores() == []
