"""Whether a credential still holds: the one rule behind every request (`deps.authenticate`) and behind
every live channel, which asks it again for as long as it is open (the event stream, the chat socket).

A credential holds while its user exists and
* a session (the cookie): its document exists, is not ended (signed out, its API token revoked, its
  user deleted) and is not past `expiresAt`;
* an API token: its document exists, is not revoked and is not past `expiresAt`;
* an OIDC token: it is not past `exp` (with the verifier's leeway); the bootstrap admin token: always.

The documents are read through this replica's caches (`deps.AppState`): a request takes a session from
the session cache and reads a token afresh; a channel accepts copies at most `credential_check_seconds`
old, and a chat frame is checked against Firestore before it is acted on. A replica that ends a
credential drops its copies at once and tells the others (`AppState.credentials_ended`), so an end
reaches a channel anywhere in about a datagram's latency, and at worst (every notice lost) one re-check
period after it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .auth import Credential, User
from .oidc import LEEWAY_SECONDS
from .storage import now_iso

if TYPE_CHECKING:
    from .deps import AppState
    from .services.events import Subscription

log = logging.getLogger("agentry.api.auth")
Doc = dict[str, Any]

SESSION_ENDED = "the session has ended (signed out, its API token revoked or its user deleted)"
SESSION_EXPIRED = "the session has expired"
TOKEN_INVALID = "the API token is not valid (unknown or revoked)"
TOKEN_EXPIRED = "the API token has expired"
OIDC_EXPIRED = "the OIDC token has expired"
NAMES = {"session": "the session", "token": "the API token", "oidc": "the OIDC token", "admin": "the token"}


class CredentialEnded(Exception):
    """The credential no longer holds; the message says why (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Holder:
    """Whom a credential that holds names."""

    user_id: str
    kind: str  # the user document's
    doc: Doc | None  # the session's or the token's document (None for OIDC and the admin token)


def expired(expires_at: object) -> bool:
    return isinstance(expires_at, str) and expires_at <= now_iso()


def oidc_expiry(claims: dict[str, Any]) -> str | None:
    """When a verified OIDC token stops being accepted: its `exp` plus the leeway the verifier allows."""
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return None
    when = dt.datetime.fromtimestamp(exp + LEEWAY_SECONDS, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def verify(state: AppState, cred: Credential, max_age: float | None = None) -> Holder:
    """The user `cred` names, or `CredentialEnded` saying why it no longer holds. `max_age`: how old a
    cached copy may be; None is a request's: sessions from the session cache, tokens afresh (a token
    revoked on another replica is refused at once)."""
    doc: Doc | None = None
    user_id = cred.key
    if cred.kind == "session":
        doc = await state.session(cred.key, max_age)
        if doc is None or doc.get("revoked"):
            raise CredentialEnded(SESSION_ENDED)
        if expired(doc.get("expiresAt")):
            raise CredentialEnded(SESSION_EXPIRED)
        user_id = str(doc["userId"])
    elif cred.kind == "token":
        doc = await state.token(cred.key, max_age or 0.0)
        if doc is None:
            raise CredentialEnded(TOKEN_INVALID)
        if expired(doc.get("expiresAt")):
            raise CredentialEnded(TOKEN_EXPIRED)
        user_id = str(doc["userId"])
    elif expired(cred.expires_at):
        raise CredentialEnded(OIDC_EXPIRED)
    # Deleting a user ends their sessions and tokens too: the user document's 30 s cache is enough
    # for those; for OIDC and the admin token it is the only sign, so it is asked as often as they are.
    kind = await state.user_kind(user_id, max_age if cred.kind in ("oidc", "admin") else None)
    if kind is None:
        raise CredentialEnded(f"{NAMES[cred.kind]} is not valid (its user no longer exists)")
    return Holder(user_id, kind, doc)


class LiveCredential:
    """An open channel's credential. It is asked again before the channel delivers what it read or acts
    on a frame, and every `every` seconds while the channel is idle; once ended it stays ended."""

    def __init__(self, state: AppState, user: User) -> None:
        self.state, self.user = state, user
        self.every = state.settings.credential_check_seconds
        self.reason: str | None = None

    async def ended(self, fresh: bool = False) -> str | None:
        """Why the credential no longer holds, None while it does: from copies at most `every` seconds
        old, or with `fresh` (before acting on a frame: one read per action) from Firestore."""
        if self.reason is None and self.user.credential is not None:
            try:
                await verify(self.state, self.user.credential, 0.0 if fresh else self.every)
            except CredentialEnded as exc:
                self.reason = exc.reason
        return self.reason

    async def idle(self, sub: Subscription, seconds: float) -> str | None:
        """Wait until `sub` is woken or `seconds` passed, asking again every `every` seconds meanwhile:
        why the credential ended, or None."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if await sub.wait(min(left, self.every)):
                return None
            if (reason := await self.ended()) is not None:
                return reason
        return None

    async def until_ended(self) -> str:
        """Ask every `every` seconds, and whenever the user's channels are woken (their events, or an
        end announced here or by another replica), until the credential ends: why it did."""
        with self.state.bus.subscribe(self.user.id) as sub:
            while True:
                sub.arm()
                try:
                    if (reason := await self.ended()) is not None:
                        return reason
                except Exception as exc:  # Firestore unavailable: requests fail too; ask again later
                    log.warning("a live credential not re-checked: %s", type(exc).__name__)
                await sub.wait(self.every)
