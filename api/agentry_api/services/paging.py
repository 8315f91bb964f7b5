"""Pagination of the lists that are not executions: `?limit=` (bounded) and an opaque `cursor`.

The cursor of these lists is an offset (a user's agents, tokens and conversations are bounded by the
quotas; approvals are read in order from Firestore). Executions page by (createdAt, id) instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from fastapi import Query

from .errors import Invalid

T = TypeVar("T")
MAX_LIMIT = 100
MAX_OFFSET = 10_000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (1-{MAX_LIMIT}).")]
Cursor = Annotated[str | None, Query(max_length=32, description="nextCursor of the previous page.")]


def offset_of(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    if not cursor.isdigit() or int(cursor) > MAX_OFFSET:
        raise Invalid(["query", "cursor"], "cursor is not one this API returned")
    return int(cursor)


def page(items: Sequence[T], offset: int, limit: int) -> tuple[list[T], str | None]:
    """One page of an ordered list, and the cursor of the next (None: this was the last)."""
    chosen = list(items[offset : offset + limit])
    more = len(items) > offset + limit and offset + limit <= MAX_OFFSET
    return chosen, str(offset + limit) if more else None
