"""Errors services raise; `main.py` maps each to one HTTP status with a reason (never a 500)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REQUEST_ID = "agentry.request_id"  # ASGI scope key: the request's correlation id (X-Request-ID)


class NotFound(Exception):
    """404: absent or not yours (the two are not told apart, so nothing leaks)."""


class Conflict(Exception):
    """409: the request is valid but the resource's state does not allow it now."""


class Invalid(Exception):
    """422 naming the field, in the same shape as FastAPI's validation errors. `more`: further
    (loc, msg) pairs of the same request, so that one answer lists every problem."""

    def __init__(
        self, loc: Sequence[str | int], msg: str, more: Sequence[tuple[Sequence[str | int], str]] = ()
    ) -> None:
        super().__init__(msg)
        self.loc = list(loc)
        self.msg = msg
        self.errors: list[dict[str, Any]] = [{"loc": self.loc, "msg": msg}] + [
            {"loc": list(lc), "msg": m} for lc, m in more
        ]


class Unavailable(Exception):
    """503: a dependency (Firestore, the API server, the LLM) cannot be reached; retry later."""

    def __init__(self, msg: str, retry_after: int = 5) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class OverQuota(Exception):
    """429: a per-user quota (or the guest-session rate) is used up; nothing was created.

    `limit` names the quota (`agents`, `concurrent_runs`, ...), `allowed` its value, `retry_after`
    the seconds after which trying again can succeed (None: only when the user deletes something).
    """

    def __init__(self, limit: str, allowed: int, msg: str, retry_after: int | None = None) -> None:
        super().__init__(msg)
        self.limit, self.allowed, self.msg, self.retry_after = limit, allowed, msg, retry_after
