"""Session and API token documents kept in memory for a few seconds: a cookie request, and a live
channel asking again whether its credential holds (credentials.py), then cost no Firestore read.

A document read from Firestore is kept `ttl` seconds (only live ones: an unknown or ended one is
dropped, and read again each time); a reader may ask for a younger copy (`max_age`). A session ended
on this replica (sign-out, a revoked token, a deleted user) is dropped at once; one ended on another
replica is dropped when this replica hears of it (its datagram, services/peers.py, or the revocation
listener, services/feed.py), and in any case after `ttl`. `ttl` 0 turns the cache off. Requests read
tokens afresh (deps.py): the token copies serve the channels' re-checks only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from .storage.sessions import session_key

Doc = dict[str, Any]
MAX_ENTRIES = 20_000
TOKEN = "token:"  # token copies' keys: distinct from session documents' ids (the listener's keys)


class SessionCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._docs: dict[str, tuple[float, Doc]] = {}

    def _get(self, key: str, max_age: float | None) -> Doc | None:
        entry = self._docs.get(key)
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        if entry is None or time.monotonic() - entry[0] >= limit:
            return None
        return entry[1]

    def _put(self, key: str, doc: Doc | None) -> None:
        if doc is None or doc.get("revoked") or self.ttl <= 0:
            self._docs.pop(key, None)  # an ended one must not outlive the read that saw it end
            return
        if len(self._docs) >= MAX_ENTRIES:
            self._docs.clear()  # rare: a cache miss costs one read
        self._docs[key] = (time.monotonic(), doc)

    def get(self, session_id: str, max_age: float | None = None) -> Doc | None:
        return self._get(session_key(session_id), max_age)

    def put(self, session_id: str, doc: Doc | None) -> None:
        self._put(session_key(session_id), doc)

    def get_token(self, token_hash: str, max_age: float | None = None) -> Doc | None:
        return self._get(TOKEN + token_hash, max_age)

    def put_token(self, token_hash: str, doc: Doc | None) -> None:
        self._put(TOKEN + token_hash, doc)

    def drop(self, keys: Iterable[str]) -> set[str]:
        """Forget session documents by id (`session_key` of the session id: what the listener sees);
        the users they belonged to, as far as this cache knew them."""
        users = set()
        for key in keys:
            entry = self._docs.pop(key, None)
            if entry is not None and isinstance(entry[1].get("userId"), str):
                users.add(entry[1]["userId"])
        return users

    def drop_session(self, session_id: str) -> None:
        self._docs.pop(session_key(session_id), None)

    def drop_user(self, user_id: str) -> None:
        """Forget the user's sessions and tokens."""
        for key in [k for k, (_, doc) in self._docs.items() if doc.get("userId") == user_id]:
            self._docs.pop(key, None)
