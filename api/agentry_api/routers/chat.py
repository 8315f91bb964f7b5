"""The chat designer over a WebSocket (`/api/chat`), and the user's conversations.

Frames are JSON. Client → server: `{"type": "message", "text": "..."}`, `{"type": "save"}`,
`{"type": "try", "input": "..."}` (run the current draft once), `{"type": "decide", "approval": ID,
"approved": bool}`. Server → client: `hello` (conversation id, history, trials, whether an LLM is
configured), `message` (assistant text), `draft` (validated draft, errors, diff against the saved
agent), `saved`, `trial` (one part of a trial run: services/trials/feed.py), `decided`, `error`
(`code`: LLM_REQUIRED, LLM_ERROR, INVALID, OVER_QUOTA, TRIAL_FAILED, ...). Authentication as for
HTTP (cookie from the same origin, or an Authorization header); a refused connection is accepted and
closed at once with code 4401 (not signed in), 4403 (cross-origin) or 4404 (not yours or absent) and
a reason. The credential is asked again for as long as the socket is open (`Guard`): once it no longer
holds (signed out, revoked, expired, the user deleted) the socket is closed with 4401 and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnected

from ..auth import User
from ..credentials import LiveCredential
from ..deps import AppState, CurrentUser, StateDep, authenticate, state_of
from ..designer_llm import LLM_REQUIRED_MESSAGE
from ..schemas.chat import MAX_TEXT, DecideFrame, TryFrame
from ..services.designer import Designer
from ..services.errors import Conflict, Invalid, NotFound, OverQuota, Unavailable
from ..services.paging import Cursor, Limit, offset_of, page
from ..services.trials.feed import TrialFollower, new_entry, record
from ..services.trials.run import TrialService
from ..services.views import agent_out

router = APIRouter(tags=["chat"])
log = logging.getLogger("agentry.api.chat")
Doc = dict[str, Any]


@dataclass
class Chat:
    """One socket's conversation and what answers its frames."""

    state: AppState
    user: User
    conv: Doc
    designer: Designer
    trials: TrialService
    follower: TrialFollower


class Guard:
    """A socket's live credential (credentials.py). It is read afresh before each frame the socket acts
    on, and asked from a recent copy before each frame it sends and every few seconds while idle; once
    it no longer holds, the socket is closed with 4401 and why, and nothing more is sent."""

    def __init__(self, websocket: WebSocket, live: LiveCredential) -> None:
        self.websocket, self.live = websocket, live
        self.lock = asyncio.Lock()  # the trial follower sends from its own task
        self.closed = False
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watch = asyncio.get_running_loop().create_task(self._close_when_ended())

    async def _close_when_ended(self) -> None:
        await self.close(4401, await self.live.until_ended())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def allows(self) -> bool:
        """Whether to act on the frame just received (if not, the socket is closed)."""
        reason = await self.live.ended(fresh=True)
        if reason is not None:
            await self.close(4401, reason)
        return not self.closed

    async def send(self, frame: Doc) -> None:
        async with self.lock:
            if self.closed:
                return
            reason = await self.live.ended()
            if reason is not None:
                await self._close(4401, reason)
                return
            await self.websocket.send_json(frame)

    async def close(self, code: int, reason: str) -> None:
        async with self.lock:
            await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):  # the client may have gone already
                await self.websocket.close(code=code, reason=reason[:120])


@router.get("/api/conversations")
async def conversations(
    user: CurrentUser, state: StateDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    docs, next_cursor = page(await state.store.list_conversations(user.id), offset_of(cursor), limit)
    return {
        "nextCursor": next_cursor,
        "items": [
            {
                "id": d["id"],
                "agentId": d.get("agentId"),
                "messages": len(d.get("messages", [])),
                "updatedAt": d.get("updatedAt"),
            }
            for d in docs
        ],
    }


@router.websocket("/api/chat")
async def chat(
    websocket: WebSocket,
    conversation: Annotated[str | None, Query(max_length=64)] = None,
    agent: Annotated[str | None, Query(max_length=253)] = None,
) -> None:
    state = state_of(websocket)
    # Accept first: a close before the handshake reaches the client as a bare HTTP 403, without the
    # code and reason that say why.
    await websocket.accept()
    try:
        user = await authenticate(websocket, state)
    except HTTPException as exc:
        await websocket.close(code=4000 + exc.status_code, reason=str(exc.detail)[:120])
        return
    if user is None:
        await websocket.close(code=4401, reason="not signed in")
        return
    designer = Designer(state.store, state.agents, state.llm, state.settings.chat_model)
    try:
        if not conversation:  # a new one counts against the `conversations` quota
            await state.quotas.conversation_start(user)
        conv = await designer.open(user, conversation, agent)
    except NotFound as exc:
        await websocket.close(code=4404, reason=str(exc)[:120])
        return
    except OverQuota as exc:
        await websocket.close(code=4429, reason=exc.msg[:120])
        return
    guard = Guard(websocket, LiveCredential(state, user))
    trials = TrialService(state.store, state.cluster, state.bus, state.agents, state.quotas)
    follower = TrialFollower(
        trials, state.bus, state.store, user, conv, guard.send, state.settings.sse_poll_seconds
    )
    chat_ = Chat(state, user, conv, designer, trials, follower)
    guard.start()
    try:
        await serve(websocket, chat_, guard)
    finally:
        await guard.stop()
        await follower.close()


async def serve(websocket: WebSocket, chat_: Chat, guard: Guard) -> None:
    conv, send = chat_.conv, guard.send
    history = [{"role": m["role"], "content": m["content"]} for m in conv["messages"]]
    await send(
        {
            "type": "hello",
            "conversation": conv["id"],
            "agentId": conv.get("agentId"),
            "messages": history,
            "trials": conv.get("trials", []),
            "llm": chat_.state.llm is not None,
        }
    )
    if chat_.state.llm is None:
        await send({"type": "error", "code": "LLM_REQUIRED", "message": LLM_REQUIRED_MESSAGE})
    try:
        await chat_.follower.resume()
        await chat_.follower.sweep()
        while not guard.closed:
            frame = await websocket.receive_json()
            if not await guard.allows():  # every action is authorized when it happens
                return
            for out in await answer(chat_, frame):
                await send(out)
    except (WebSocketDisconnect, WebSocketDisconnected):  # the client left, or the guard closed it
        return
    except ValueError:
        await guard.close(1003, "frames must be JSON")


def _invalid(message: str, errors: list[Doc] | None = None) -> Doc:
    out: Doc = {"type": "error", "code": "INVALID", "message": message}
    if errors is not None:
        out["errors"] = errors
    return out


def _frame_errors(exc: ValidationError) -> list[Doc]:
    return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]


async def answer(chat_: Chat, frame: Any) -> list[Doc]:
    """The frames that answer one client frame."""
    kind = frame.get("type") if isinstance(frame, dict) else None
    designer, user, conv = chat_.designer, chat_.user, chat_.conv
    if kind == "message":
        text = frame.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            return [_invalid(f"text must be 1-{MAX_TEXT} characters")]
        return await designer.say(user, conv, text.strip())
    if kind == "save":
        try:
            doc = await designer.save(user, conv)
        except (Conflict, Invalid, NotFound) as exc:
            return [_invalid(str(exc))]
        return [{"type": "saved", "agent": agent_out(doc).model_dump(mode="json")}]
    if kind == "try":
        return await try_draft(chat_, frame)
    if kind == "decide":
        return await decide(chat_, frame)
    return [_invalid("frame type must be 'message', 'save', 'try' or 'decide'")]


async def try_draft(chat_: Chat, frame: Doc) -> list[Doc]:
    """Run the current draft once; its parts follow as `trial` frames from the event feed."""
    try:
        body = TryFrame.model_validate(frame)
    except ValidationError as exc:
        return [_invalid("invalid try frame", _frame_errors(exc))]
    errors = await chat_.designer.draft_errors(chat_.conv)
    if errors:
        return [_invalid("the draft cannot run: " + "; ".join(e["msg"] for e in errors), errors)]
    store, user = chat_.state.store, chat_.user
    since = await store.last_event_seq(user.id)  # before the run exists: its first event is after
    try:
        doc = await chat_.trials.start(user, chat_.conv, body.input)
    except Invalid as exc:
        return [_invalid(exc.msg, exc.errors)]
    except OverQuota as exc:
        return [over_quota(exc)]
    except (Conflict, Unavailable) as exc:
        return [{"type": "error", "code": "TRIAL_FAILED", "message": str(exc)}]
    entry = new_entry(doc, chat_.conv)
    started = {"kind": "started", "agent": chat_.conv["draft"]["agent"].get("name"), "input": body.input}
    entry["parts"].append(started)
    record(chat_.conv, entry)
    await store.put_conversation(chat_.conv)
    chat_.follower.follow(entry, since)
    return [{"type": "trial", "execution": doc["id"], "part": started, "done": False}]


def over_quota(exc: OverQuota) -> Doc:
    """A quota refusal, as the HTTP API's 429 says it."""
    return {
        "type": "error",
        "code": "OVER_QUOTA",
        "status": 429,
        "limit": exc.limit,
        "allowed": exc.allowed,
        "retryAfter": exc.retry_after,
        "message": exc.msg,
    }


async def decide(chat_: Chat, frame: Doc) -> list[Doc]:
    """Approve or deny what a trial waits for, as the approvals page would."""
    try:
        body = DecideFrame.model_validate(frame)
    except ValidationError as exc:
        return [_invalid("invalid decide frame", _frame_errors(exc))]
    try:
        doc = await chat_.state.approvals.decide(chat_.user, body.approval, body.approved, body.reason)
    except (NotFound, Conflict, Unavailable) as exc:
        return [{"type": "error", "code": "DECISION_FAILED", "message": str(exc)}]
    return [{"type": "decided", "approval": doc["id"], "state": doc.get("state")}]
