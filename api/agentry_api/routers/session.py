"""Sessions and API tokens: guest session, sign in with a token, sign out, `me`, token CRUD."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from starlette.requests import Request

from ..auth import SESSION_COOKIE, User, hash_token, new_guest_id, new_token
from ..deps import AppState, CurrentUser, StateDep, bearer_user, same_origin
from ..schemas import Me, TokenCreated, TokenIn, TokenList, TokenLoginIn, TokenOut
from ..storage import now_iso

router = APIRouter(prefix="/api", tags=["session"])


def set_session(response: Response, state: AppState, user_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        state.sessions.dump(user_id),
        max_age=state.settings.session_max_age_seconds,
        httponly=True,
        secure=state.settings.cookie_secure,
        samesite="lax",
        path="/",
    )


async def new_guest(state: AppState) -> User:
    user_id = new_guest_id()
    await state.store.ensure_user(user_id, "guest")
    return User(user_id, "guest", "cookie")


@router.post("/session/guest", response_model=Me, status_code=status.HTTP_201_CREATED)
async def guest_session(request: Request, response: Response, state: StateDep) -> Me:
    """Start a guest session (what the dashboard does on a first visit)."""
    if not state.settings.guest_sessions:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "guest sessions are disabled on this server")
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")
    user = await new_guest(state)
    set_session(response, state, user.id)
    return Me(id=user.id, kind=user.kind, via="cookie")


@router.post("/session/token", response_model=Me)
async def token_session(body: TokenLoginIn, request: Request, response: Response, state: StateDep) -> Me:
    """Sign the browser in as the owner of an API token (the token itself is not kept in the cookie)."""
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")
    user = await bearer_user(state, body.token)
    set_session(response, state, user.id)
    return Me(id=user.id, kind=user.kind, via="cookie")


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(response: Response) -> Response:
    out = Response(status_code=status.HTTP_204_NO_CONTENT)
    out.delete_cookie(SESSION_COOKIE, path="/")
    return out


@router.get("/me", response_model=Me)
async def me(user: CurrentUser) -> Me:
    return Me(id=user.id, kind=user.kind, via=user.via)


@router.get("/tokens", response_model=TokenList, tags=["tokens"])
async def list_tokens(user: CurrentUser, state: StateDep) -> TokenList:
    return TokenList(items=[TokenOut(**_public(d)) for d in await state.store.list_tokens(user.id)])


def _public(doc: dict[str, object]) -> dict[str, object]:
    return {k: doc.get(k) for k in ("id", "name", "prefix", "createdAt", "lastUsedAt")}


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED, tags=["tokens"])
async def create_token(body: TokenIn, user: CurrentUser, state: StateDep) -> TokenCreated:
    """Create an API token for scripts and the CLI. The token is shown once; only its hash is stored."""
    token = new_token()
    digest = hash_token(token)
    doc = {
        "id": digest[:12],
        "userId": user.id,
        "name": body.name,
        "prefix": token[:8],
        "createdAt": now_iso(),
        "lastUsedAt": None,
    }
    await state.store.create_token(digest, doc)
    return TokenCreated(token=token, **_public(doc))  # type: ignore[arg-type]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["tokens"])
async def revoke_token(token_id: str, user: CurrentUser, state: StateDep) -> Response:
    if not await state.store.revoke_token(user.id, token_id[:64]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"token {token_id!r} not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
