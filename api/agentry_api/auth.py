"""Who is calling: sessions (a signed cookie naming a server-side session), API tokens (stored
hashed), OIDC bearer tokens.

The owner of everything the API writes is the `User` resolved here, never a field of a request body.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "agentry_session"
TOKEN_PREFIX = "agt_"
GUEST_PREFIX = "g-"

Kind = Literal["guest", "oidc", "admin", "user"]
Via = Literal["cookie", "token", "oidc"]


@dataclass(frozen=True)
class Credential:
    """What a caller signed in with, kept so that a live channel can ask again whether it still holds
    (credentials.py). `key`: the session id, the API token's hash, or (OIDC, the admin token) the user id."""

    kind: Literal["session", "token", "oidc", "admin"]
    key: str = field(repr=False)
    expires_at: str | None = None  # an OIDC token's `exp` (with the verifier's leeway)


@dataclass(frozen=True)
class User:
    id: str
    kind: Kind
    via: Via
    session: str | None = None  # the session id (cookie callers): what signing out ends
    token: str | None = None  # the API token's public id (token callers)
    credential: Credential | None = field(default=None, repr=False, compare=False)

    @property
    def owner_label(self) -> str:
        """The value of the `agentry.dev/owner` label on CRs: a hash, not the id itself."""
        return owner_label(self.id)


def owner_label(user_id: str) -> str:
    return hashlib.sha256(f"owner:{user_id}".encode()).hexdigest()[:16]


def is_guest_id(user_id: str) -> bool:
    """Guests' ids (new_guest_id): their Agents carry `agentry.dev/owner-kind: guest`, so the
    operator's run gate applies the guests' quotas to every run of them."""
    return user_id.startswith(GUEST_PREFIX)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_guest_id() -> str:
    return GUEST_PREFIX + secrets.token_hex(12)


def oidc_user_id(issuer: str, subject: str) -> str:
    return "o-" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:24]


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


class Sessions:
    """Signed, timestamped session cookies (itsdangerous). The cookie holds only a session id, which
    names a server-side session (`sessions` in Firestore): ending that ends the cookie."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="agentry-session")
        self.max_age = max_age

    def dump(self, session_id: str) -> str:
        return self._serializer.dumps({"s": session_id})

    def load(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        session_id = data.get("s") if isinstance(data, dict) else None
        return session_id if isinstance(session_id, str) and 0 < len(session_id) <= 128 else None
