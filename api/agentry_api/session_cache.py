"""Session documents kept in memory for a few seconds: a cookie request then costs no Firestore read.

A session read from Firestore is kept `ttl` seconds (only live ones: an unknown or ended session is
read again each time). A session ended on this replica (sign-out, a revoked token, a deleted user)
is dropped at once; one ended on another replica is dropped when this replica's revocation listener
sees it (services/feed.py, about the listener's latency), and in any case after `ttl`. `ttl` 0
turns the cache off.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from .storage.sessions import session_key

Doc = dict[str, Any]
MAX_ENTRIES = 20_000


class SessionCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._docs: dict[str, tuple[float, Doc]] = {}

    def get(self, session_id: str) -> Doc | None:
        entry = self._docs.get(session_key(session_id))
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            return None
        return entry[1]

    def put(self, session_id: str, doc: Doc) -> None:
        if self.ttl <= 0:
            return
        if len(self._docs) >= MAX_ENTRIES:
            self._docs.clear()  # rare: a cache miss costs one read
        self._docs[session_key(session_id)] = (time.monotonic(), doc)

    def drop(self, keys: Iterable[str]) -> None:
        """Forget session documents by id (`session_key` of the session id: what the listener sees)."""
        for key in keys:
            self._docs.pop(key, None)

    def drop_session(self, session_id: str) -> None:
        self._docs.pop(session_key(session_id), None)

    def drop_user(self, user_id: str) -> None:
        for key in [k for k, (_, doc) in self._docs.items() if doc.get("userId") == user_id]:
            self._docs.pop(key, None)
