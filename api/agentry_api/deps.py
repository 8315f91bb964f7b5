"""Dependencies: the app's state (store, cluster, services), and `CurrentUser`.

Authentication order: `Authorization: Bearer` (API token `agt_...`, the bootstrap admin token, or an
OIDC JWT when OIDC is configured), then the signed session cookie, which names a server-side
session. Cookie-authenticated requests that change something (and WebSockets) must come from the same origin.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, status
from starlette.requests import HTTPConnection

from .auth import (
    SESSION_COOKIE,
    TOKEN_PREFIX,
    Credential,
    Kind,
    Sessions,
    User,
    hash_token,
    oidc_user_id,
    same_secret,
)
from .cluster import Cluster
from .credentials import CredentialEnded, oidc_expiry, verify
from .designer_llm import LLM
from .oidc import InvalidToken, TokenVerifier
from .services.agents import AgentService
from .services.approvals import ApprovalService
from .services.events import EventBus
from .services.feed import RevocationFeed
from .services.hooks import HookReceiver
from .services.notifications import Notifications
from .services.quotas import Quotas
from .services.runs import RunService
from .services.triggers import TriggerService
from .session_cache import SessionCache
from .settings import Settings
from .storage import Store, now_iso
from .watcher import Watcher

Doc = dict[str, Any]

log = logging.getLogger("agentry.api.auth")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
USER_CACHE_SECONDS = 30.0
TOUCH_SECONDS = 60.0  # lastUsedAt of tokens and sessions is written at most once a minute


@dataclass
class AppState:
    settings: Settings
    store: Store
    cluster: Cluster
    bus: EventBus
    agents: AgentService
    runs: RunService
    approvals: ApprovalService
    sessions: Sessions
    verifier: TokenVerifier | None
    llm: LLM | None  # the agent designer's model; None: not configured (LLM_REQUIRED)
    quotas: Quotas
    scheduler_verifier: TokenVerifier | None = None  # Cloud Scheduler's ID tokens (routers/scheduler.py)
    sse_open: int = 0
    watcher: Watcher | None = None  # started by the lifespan unless settings.watch is off
    session_cache: SessionCache = field(default_factory=lambda: SessionCache(0))
    revocations: RevocationFeed | None = None  # drops sessions ended on other replicas from the cache
    triggers: TriggerService | None = None  # owners' triggers (routers/triggers.py)
    hooks: HookReceiver | None = None  # the trigger receiver (routers/hooks.py): its caches and rates
    notifications: Notifications | None = None  # subscriptions, the outbox and its dispatcher
    _users: dict[str, tuple[float, str]] = field(default_factory=dict)

    async def session(self, session_id: str, max_age: float | None = None) -> Doc | None:
        """The session's document, from the cache while fresh (session_cache.py), and at most
        `max_age` old if given."""
        doc = self.session_cache.get(session_id, max_age)
        if doc is None:
            doc = await self.store.session(session_id)
            self.session_cache.put(session_id, doc)
        return doc

    async def token(self, token_hash: str, max_age: float = 0.0) -> Doc | None:
        """An API token's document (None: unknown or revoked): read afresh, or a copy at most
        `max_age` old (a live channel's re-check)."""
        doc = self.session_cache.get_token(token_hash, max_age) if max_age > 0 else None
        if doc is None:
            doc = await self.store.token(token_hash)
            self.session_cache.put_token(token_hash, doc)
        return doc

    async def user_kind(self, user_id: str, max_age: float | None = None) -> str | None:
        cached = self._users.get(user_id)
        limit = USER_CACHE_SECONDS if max_age is None else min(max_age, USER_CACHE_SECONDS)
        if cached and time.monotonic() - cached[0] < limit:
            return cached[1]
        doc = await self.store.get_user(user_id)
        if doc is None:
            self._users.pop(user_id, None)
            return None
        kind = str(doc.get("kind", "guest"))
        if len(self._users) > 10000:
            self._users.clear()
        self._users[user_id] = (time.monotonic(), kind)
        return kind

    def credentials_ended(self, user_id: str) -> None:
        """A credential of the user ended here (signed out, a token revoked, the user deleted): this
        replica forgets what it keeps of theirs, their open channels ask again now, and the other
        replicas are told to do the same (services/peers.py)."""
        self.forget_users([user_id])
        if self.bus.peers is not None:
            self.bus.peers.send([user_id], ended=True)

    def forget_users(self, user_ids: Iterable[str]) -> None:
        """Drop the users' cached documents (kind, sessions, tokens) and wake their open channels, which
        then read them again: on an end here or announced by another replica."""
        users = list(user_ids)
        for user_id in users:
            self._users.pop(user_id, None)
            self.session_cache.drop_user(user_id)
        self.bus.wake(users)

    def sessions_ended(self, keys: Iterable[str]) -> None:
        """The revocation listener's news (sessions ended on any replica): dropped from the cache, and
        the channels of their users ask again now."""
        self.bus.wake(self.session_cache.drop(keys))


def stale(last_used: object) -> bool:
    """Whether a lastUsedAt is old enough to be written again (throttled to once a minute)."""
    if not isinstance(last_used, str):
        return True
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=TOUCH_SECONDS)
    return last_used < cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def role_of(kind: str) -> Kind:
    """The caller's kind from the user document's (guests stay guests whatever they sign in with)."""
    return "admin" if kind == "admin" else "guest" if kind == "guest" else "user"


def forbidden(message: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, message)


def email_allowed(settings: Settings, claims: dict[str, object]) -> bool:
    """With an allow-list of emails or domains, a verified email on it; without one, everyone."""
    if not settings.oidc_allowed_emails and not settings.oidc_allowed_domains:
        return True
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is not True:
        return False
    email = email.strip().lower()
    if email in {e.strip().lower() for e in settings.oidc_allowed_emails}:
        return True
    domain = email.rpartition("@")[2]
    return domain in {d.strip().lower().lstrip("@") for d in settings.oidc_allowed_domains}


def state_of(conn: HTTPConnection) -> AppState:
    state: AppState = conn.app.state.agentry
    return state


async def get_state(conn: HTTPConnection) -> AppState:
    """The dependency. Dependencies are `async def`: FastAPI runs a plain `def` one in its thread pool,
    two thread switches per request for nothing."""
    return state_of(conn)


StateDep = Annotated[AppState, Depends(get_state)]


def unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def same_origin(conn: HTTPConnection) -> bool:
    if conn.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = conn.headers.get("origin")
    if origin is None:  # browsers send Origin on every unsafe or WebSocket request
        return True
    return urlsplit(origin).netloc == conn.headers.get("host")


async def bearer_user(state: AppState, credential: str) -> User:
    if state.settings.admin_token is not None and same_secret(
        credential, state.settings.admin_token.get_secret_value()
    ):
        owner = state.settings.import_owner
        await state.store.ensure_user(owner, "admin")
        return User(owner, "admin", "token", credential=Credential("admin", owner))
    if credential.startswith(TOKEN_PREFIX):
        cred = Credential("token", hash_token(credential))
        try:
            held = await verify(state, cred)
        except CredentialEnded as exc:
            raise unauthorized(exc.reason) from None
        doc = held.doc or {}
        if stale(doc.get("lastUsedAt")):
            try:
                await state.store.touch_token(cred.key)
            except Exception as exc:  # bookkeeping: never the reason a request fails
                log.warning("lastUsedAt of a token not written: %s", type(exc).__name__)
        return User(held.user_id, role_of(held.kind), "token", token=str(doc.get("id")), credential=cred)
    if state.verifier is None:
        raise unauthorized("the bearer token is not an Agentry API token, and OIDC is not configured")
    try:
        claims = await state.verifier.verify(credential)
    except InvalidToken as exc:
        raise unauthorized(f"the OIDC token is not accepted: {exc}") from exc
    if not email_allowed(state.settings, claims):
        raise forbidden("this account is not allowed on this server (AGENTRY_OIDC_ALLOWED_*)")
    user_id = oidc_user_id(str(claims["iss"]), str(claims["sub"]))
    await state.store.ensure_user(user_id, "oidc", str(claims.get("email") or claims["sub"]))
    return User(user_id, "oidc", "oidc", credential=Credential("oidc", user_id, oidc_expiry(claims)))


async def authenticate(conn: HTTPConnection, state: AppState) -> User | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise unauthorized("use 'Authorization: Bearer <token>'")
        return await bearer_user(state, credential.strip())
    session_id = state.sessions.load(conn.cookies.get(SESSION_COOKIE))
    if session_id is None:
        return None
    cred = Credential("session", session_id)
    try:
        held = await verify(state, cred)
    except CredentialEnded:
        return None  # an ended session is no credential: the caller is anonymous
    session = held.doc or {}
    if stale(session.get("lastUsedAt")):
        session["lastUsedAt"] = now_iso()  # the cached copy too: touched once a minute, not per request
        try:
            await state.store.touch_session(session_id)
        except Exception as exc:  # bookkeeping only
            log.warning("lastUsedAt of a session not written: %s", type(exc).__name__)
    method = conn.scope.get("method", "GET")
    if (conn.scope["type"] == "websocket" or method not in SAFE_METHODS) and not same_origin(conn):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused (session cookie)")
    return User(held.user_id, role_of(held.kind), "cookie", session=session_id, credential=cred)


async def current_user(conn: HTTPConnection, state: StateDep) -> User:
    user = await authenticate(conn, state)
    if user is None:
        raise unauthorized(
            "not signed in: open the dashboard (a guest session is created), or send "
            "'Authorization: Bearer <API token>'"
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]
