"""The chat designer over a WebSocket (`/api/chat`), and the user's conversations.

Frames are JSON. Client → server: `{"type": "message", "text": "..."}`, `{"type": "save"}`.
Server → client: `hello` (conversation id, history, whether an LLM is configured), `message`
(assistant text), `draft` (validated draft, errors, diff against the saved agent), `saved`, `error`
(`code`: LLM_REQUIRED, LLM_ERROR, INVALID, ...). Authentication as for HTTP (cookie from the same
origin, or an Authorization header); a refused connection is accepted and closed at once with code
4401 (not signed in), 4403 (cross-origin) or 4404 (not yours or absent) and a reason.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, WebSocket, WebSocketDisconnect

from ..auth import User
from ..deps import CurrentUser, StateDep, authenticate, get_state
from ..designer_llm import LLM_REQUIRED_MESSAGE
from ..services.designer import Designer
from ..services.errors import Conflict, Invalid, NotFound, OverQuota
from ..services.paging import Cursor, Limit, offset_of, page
from ..services.views import agent_out

router = APIRouter(tags=["chat"])
log = logging.getLogger("agentry.api.chat")
MAX_TEXT = 8000


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
    state = get_state(websocket)
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
    history = [{"role": m["role"], "content": m["content"]} for m in conv["messages"]]
    await websocket.send_json(
        {
            "type": "hello",
            "conversation": conv["id"],
            "agentId": conv.get("agentId"),
            "messages": history,
            "llm": state.llm is not None,
        }
    )
    if state.llm is None:
        await websocket.send_json({"type": "error", "code": "LLM_REQUIRED", "message": LLM_REQUIRED_MESSAGE})
    try:
        while True:
            frame = await websocket.receive_json()
            for out in await answer(designer, user, conv, frame):
                await websocket.send_json(out)
    except WebSocketDisconnect:
        return
    except ValueError:
        await websocket.close(code=1003, reason="frames must be JSON")


def _invalid(message: str) -> dict[str, Any]:
    return {"type": "error", "code": "INVALID", "message": message}


async def answer(designer: Designer, user: User, conv: dict[str, Any], frame: Any) -> list[dict[str, Any]]:
    """The frames that answer one client frame."""
    kind = frame.get("type") if isinstance(frame, dict) else None
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
    return [_invalid("frame type must be 'message' or 'save'")]
