"""Sessions, API tokens and accounts: guest session, sign in with a token, sign out, `me`, token CRUD,
and deleting an account (your own, or any as an administrator)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, Response, status
from starlette.requests import HTTPConnection, Request

from ..auth import SESSION_COOKIE, User, hash_token, new_guest_id, new_session_id, new_token
from ..deps import AppState, CurrentUser, StateDep, bearer_user, same_origin
from ..schemas import Me, TokenCreated, TokenIn, TokenList, TokenLoginIn, TokenOut
from ..services.errors import Invalid
from ..services.paging import Cursor, Limit, offset_of, page
from ..storage import now_iso

router = APIRouter(prefix="/api", tags=["session"])


def client_address(conn: HTTPConnection, hops: int) -> str:
    """The caller's address: the TCP peer, or with `hops` proxies in front, the X-Forwarded-For entry
    that many from the right (the one the outermost trusted proxy appended)."""
    peer = conn.client.host if conn.client else "unknown"
    if hops <= 0:
        return peer
    entries = [e.strip() for e in conn.headers.get("x-forwarded-for", "").split(",") if e.strip()]
    return entries[-hops] if len(entries) >= hops else peer


async def open_session(state: AppState, user: User, token_id: str | None = None) -> str:
    """A server-side session for the user; its id goes into the cookie."""
    session_id = new_session_id()
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=state.settings.session_max_age_seconds)
    await state.store.create_session(
        session_id,
        {
            "userId": user.id,
            "kind": user.kind,
            "tokenId": token_id,
            "createdAt": now_iso(),
            "lastUsedAt": now_iso(),
            "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "revoked": False,
            "ttl": expires,  # a timestamp: a Firestore TTL policy on sessions.ttl deletes it then
        },
    )
    return session_id


def set_session(response: Response, state: AppState, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        state.sessions.dump(session_id),
        max_age=state.settings.session_max_age_seconds,
        httponly=True,
        secure=state.settings.cookie_secure,
        samesite="lax",
        path="/",
    )


async def new_guest(state: AppState, conn: HTTPConnection) -> tuple[User, str]:
    """A guest user and its session; 429 past the guest-session rate of the caller's address."""
    client = await state.quotas.guest_mint(client_address(conn, state.settings.forwarded_hops))
    user_id = new_guest_id()
    await state.store.ensure_user(user_id, "guest", client=client)
    user = User(user_id, "guest", "cookie")
    return user, await open_session(state, user)


@router.post("/session/guest", response_model=Me, status_code=status.HTTP_201_CREATED)
async def guest_session(request: Request, response: Response, state: StateDep) -> Me:
    """Start a guest session (what the dashboard does on a first visit)."""
    if not state.settings.guest_sessions:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "guest sessions are disabled on this server")
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")
    user, session_id = await new_guest(state, request)
    set_session(response, state, session_id)
    return Me(id=user.id, kind=user.kind, via="cookie")


@router.post("/session/token", response_model=Me)
async def token_session(body: TokenLoginIn, request: Request, response: Response, state: StateDep) -> Me:
    """Sign the browser in as the owner of an API token (the token itself is not kept in the cookie)."""
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")
    user = await bearer_user(state, body.token)
    session_id = await open_session(state, user, user.token)
    set_session(response, state, session_id)
    return Me(id=user.id, kind=user.kind, via="cookie")


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(request: Request, state: StateDep) -> Response:
    """End this browser's session on the server (the cookie stops working everywhere) and drop it."""
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")
    session_id = state.sessions.load(request.cookies.get(SESSION_COOKIE))
    if session_id is not None:
        user_id = await state.store.end_session(session_id)
        state.session_cache.drop_session(session_id)
        if user_id is not None:
            state.credentials_ended(user_id)  # its open streams and sockets end, on every replica
    out = Response(status_code=status.HTTP_204_NO_CONTENT)
    out.delete_cookie(SESSION_COOKIE, path="/")
    return out


@router.get("/me", response_model=Me)
async def me(user: CurrentUser) -> Me:
    return Me(id=user.id, kind=user.kind, via=user.via)


@router.get("/tokens", response_model=TokenList, tags=["tokens"])
async def list_tokens(
    user: CurrentUser, state: StateDep, limit: Limit = 100, cursor: Cursor = None
) -> TokenList:
    items, next_cursor = page(await state.store.list_tokens(user.id), offset_of(cursor), limit)
    return TokenList(items=[TokenOut(**_public(d)) for d in items], nextCursor=next_cursor)


def _public(doc: dict[str, object]) -> dict[str, object]:
    return {k: doc.get(k) for k in ("id", "name", "prefix", "createdAt", "lastUsedAt", "expiresAt")}


def expiry(state: AppState, when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise Invalid(["body", "expiresAt"], "expiresAt needs a time zone (e.g. Z)")
    now = dt.datetime.now(dt.UTC)
    if when <= now:
        raise Invalid(["body", "expiresAt"], "expiresAt must be in the future")
    if when > now + dt.timedelta(days=state.settings.token_max_days):
        raise Invalid(
            ["body", "expiresAt"], f"expiresAt is at most {state.settings.token_max_days} days ahead"
        )
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED, tags=["tokens"])
async def create_token(body: TokenIn, user: CurrentUser, state: StateDep) -> TokenCreated:
    """Create an API token for scripts and the CLI. The token is shown once; only its hash is stored.
    429 past the `tokens` quota."""
    await state.quotas.token_create(user)
    token = new_token()
    digest = hash_token(token)
    doc = {
        "id": digest[:12],
        "userId": user.id,
        "name": body.name,
        "prefix": token[:8],
        "createdAt": now_iso(),
        "lastUsedAt": None,
        "expiresAt": expiry(state, body.expiresAt),
    }
    await state.store.create_token(digest, doc)
    return TokenCreated(token=token, **_public(doc))  # type: ignore[arg-type]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["tokens"])
async def revoke_token(token_id: str, user: CurrentUser, state: StateDep) -> Response:
    """Revoke the token, and end the browser sessions it opened (`POST /api/session/token`)."""
    if not await state.store.revoke_token(user.id, token_id[:64]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "token not found")
    await state.store.end_sessions(user.id, token_id[:64])
    state.credentials_ended(user.id)  # its other sessions and tokens are read again: cheap, and rare
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def delete_account(state: AppState, user_id: str) -> None:
    """Delete a user: their dashboard agents first (the syncer removes the Agent CRs, which ends their
    schedules), then every session and API token of theirs and the user itself, so no credential of
    theirs works from the next request on. Their run history and usage stay: they are the ledger."""
    owner = User(user_id, "user", "token")
    for doc in await state.store.list_agents(user_id):
        if doc.get("source") == "api":
            await state.agents.delete(owner, str(doc["id"]))
    await state.store.delete_user(user_id)
    state.credentials_ended(user_id)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_me(user: CurrentUser, state: StateDep) -> Response:
    """Delete your own account (agents created in the dashboard included) and sign out everywhere."""
    await delete_account(state, user.id)
    out = Response(status_code=status.HTTP_204_NO_CONTENT)
    out.delete_cookie(SESSION_COOKIE, path="/")
    return out


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["users"])
async def delete_user(user_id: str, user: CurrentUser, state: StateDep) -> Response:
    """An administrator deletes a user (a guest abusing the installation, someone who left)."""
    if user.kind != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an administrator may delete users")
    if await state.store.get_user(user_id[:128]) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    await delete_account(state, user_id[:128])
    return Response(status_code=status.HTTP_204_NO_CONTENT)
