"""Who is calling: guest sessions (signed cookie), API tokens (stored hashed), OIDC bearer tokens.

The owner of everything the API writes is the `User` resolved here, never a field of a request body.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "agentry_session"
TOKEN_PREFIX = "agt_"

Kind = Literal["guest", "oidc", "admin", "user"]
Via = Literal["cookie", "token", "oidc"]


@dataclass(frozen=True)
class User:
    id: str
    kind: Kind
    via: Via

    @property
    def owner_label(self) -> str:
        """The value of the `agentry.dev/owner` label on CRs: a hash, not the id itself."""
        return owner_label(self.id)


def owner_label(user_id: str) -> str:
    return hashlib.sha256(f"owner:{user_id}".encode()).hexdigest()[:16]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_guest_id() -> str:
    return "g-" + secrets.token_hex(12)


def oidc_user_id(issuer: str, subject: str) -> str:
    return "o-" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:24]


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Sessions:
    """Signed, timestamped session cookies (itsdangerous). The cookie holds only the user id."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="agentry-session")
        self.max_age = max_age

    def dump(self, user_id: str) -> str:
        return self._serializer.dumps({"u": user_id})

    def load(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        user_id = data.get("u") if isinstance(data, dict) else None
        return user_id if isinstance(user_id, str) and user_id else None
