"""The chat designer: a conversation with an LLM that ends in an agent draft.

Each assistant answer may carry a draft in a ```json block; the draft is validated as an Agent spec,
checked against the API's policy, dry-run applied on the cluster, and shown as a diff against the
saved agent. Saving creates or updates the agent through `AgentService` like the form does.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pydantic import ValidationError

from ..auth import User
from ..designer_llm import LLM, LLM_REQUIRED_MESSAGE, LLMError
from ..metrics import CHAT_TURNS
from ..schemas import AgentIn
from ..storage import Store, now_iso
from .agents import AgentService
from .errors import Conflict, Invalid, NotFound

Doc = dict[str, Any]
MAX_MESSAGES = 60
SYSTEM_PROMPT = """You help a person design an autonomous AI agent for the Agentry platform.
Ask short questions until you know what the agent should do, which tools it needs (shell, python,
files, http), whether it runs on a schedule (5-field cron and an IANA time zone) and its budget.
Whenever you can propose a definition, include exactly one JSON object in a ```json fenced block:
{"name": "...", "description": "...", "instructions": "...", "tools": ["http"],
 "schedule": {"cron": "0 8 * * 1", "timeZone": "UTC"} or null,
 "budget": {"maxTurns": 20, "maxCostPerRunUSD": "1.00"}}
"instructions" is the agent's full natural-language script. Never put API keys or passwords in it."""
DRAFT_KEYS = ("description", "instructions", "tools", "schedule", "budget")
FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def extract_draft(text: str) -> Doc | None:
    for match in FENCE.finditer(text):
        try:
            value = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(value, dict) and "instructions" in value:
            return value
    return None


def draft_to_agent(draft: Doc, model: str) -> Doc:
    spec: Doc = {k: draft[k] for k in DRAFT_KEYS if draft.get(k) is not None}
    spec["model"] = draft.get("model") if isinstance(draft.get("model"), dict) else {"name": model}
    return {"name": str(draft.get("name") or "New agent")[:63], "spec": spec}


def diff(before: Doc | None, after: Doc) -> list[Doc]:
    old: Doc = {"name": before.get("name"), **(before.get("spec") or {})} if before else {}
    new: Doc = {"name": after.get("name"), **(after.get("spec") or {})}
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes.append({"field": key, "before": old.get(key), "after": new.get(key)})
    return changes


class Designer:
    def __init__(self, store: Store, agents: AgentService, llm: LLM | None, agent_model: str) -> None:
        self.store, self.agents, self.llm, self.agent_model = store, agents, llm, agent_model

    async def open(self, user: User, conversation_id: str | None, agent_id: str | None) -> Doc:
        if conversation_id:
            doc = await self.store.conversation(user.id, conversation_id)
            if doc is None:
                raise NotFound(f"conversation {conversation_id!r} not found")
            return doc
        if agent_id:
            await self.agents.get(user, agent_id)  # 404 unless it is the user's
        now = now_iso()
        doc = {
            "id": uuid.uuid4().hex,
            "userId": user.id,
            "agentId": agent_id,
            "messages": [],
            "draft": None,
            "createdAt": now,
            "updatedAt": now,
        }
        await self.store.put_conversation(doc)
        return doc

    async def say(self, user: User, conv: Doc, text: str) -> list[Doc]:
        """Handle a user message; returns the frames to send back."""
        if self.llm is None:
            CHAT_TURNS.labels("llm_required").inc()
            return [{"type": "error", "code": "LLM_REQUIRED", "message": LLM_REQUIRED_MESSAGE}]
        if len(conv["messages"]) >= MAX_MESSAGES:
            return [
                {"type": "error", "code": "TOO_LONG", "message": "this conversation is full; start a new one"}
            ]
        conv["messages"].append({"role": "user", "content": text, "at": now_iso()})
        history = [{"role": m["role"], "content": m["content"]} for m in conv["messages"]]
        try:
            answer, usage = await self.llm.complete(SYSTEM_PROMPT, history, owner=user.owner_label)
        except LLMError as exc:
            conv["messages"].pop()
            CHAT_TURNS.labels("error").inc()
            return [{"type": "error", "code": "LLM_ERROR", "message": str(exc)}]
        CHAT_TURNS.labels("ok").inc()
        frames: list[Doc] = []
        draft = extract_draft(answer)
        parts: list[Doc] = []
        if draft is not None:
            frame = await self.check_draft(user, conv, draft)
            parts.append({"type": "draft", "valid": frame["valid"]})
            frames.append(frame)
        conv["messages"].append(
            {"role": "assistant", "content": answer, "parts": parts, "usage": usage, "at": now_iso()}
        )
        conv["updatedAt"] = now_iso()
        await self.store.put_conversation(conv)
        return [{"type": "message", "role": "assistant", "text": answer, "usage": usage}, *frames]

    async def check_draft(self, user: User, conv: Doc, raw: Doc) -> Doc:
        candidate, errors = await self.validate(conv, draft_to_agent(raw, self.agent_model))
        saved = await self.store.owned_agent(user.id, conv["agentId"]) if conv.get("agentId") else None
        conv["draft"] = {"agent": candidate, "valid": not errors}
        return {
            "type": "draft",
            "draft": candidate,
            "valid": not errors,
            "errors": errors,
            "diff": diff(saved, candidate),
            "agentId": conv.get("agentId"),
        }

    async def validate(self, conv: Doc, candidate: Doc) -> tuple[Doc, list[Doc]]:
        """(the candidate as the API would store it, its errors): the Agent schema, the policy, and a
        dry-run apply on the cluster."""
        try:
            body = AgentIn.model_validate(candidate)
            await self.agents.enforce_policy(body.spec)
            await self.agents.dry_run(
                self.agents.cluster.agent_manifest(
                    "draft-" + conv["id"][:8], body.spec.wire(), "draft", body.name
                )
            )
            return {"name": body.name, "spec": body.spec.wire()}, []
        except ValidationError as exc:
            return candidate, [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        except Invalid as exc:
            return candidate, exc.errors

    async def draft_errors(self, conv: Doc) -> list[Doc]:
        """Why the conversation's current draft cannot run now (none: it can); checked again at the
        moment of a trial, since the policy may have changed since it was drafted."""
        draft = conv.get("draft")
        if not draft or not isinstance(draft.get("agent"), dict):
            return [{"loc": ["draft"], "msg": "there is no draft to try yet: describe the agent first"}]
        return (await self.validate(conv, draft["agent"]))[1]

    async def save(self, user: User, conv: Doc) -> Doc:
        draft = conv.get("draft")
        if not draft or not draft.get("valid"):
            raise Conflict("there is no valid draft to save yet")
        body = AgentIn.model_validate(draft["agent"])
        if conv.get("agentId"):
            doc = await self.agents.update(user, conv["agentId"], body)
        else:
            doc = await self.agents.create(user, body)
            conv["agentId"] = doc["id"]
        conv["updatedAt"] = now_iso()
        await self.store.put_conversation(conv)
        return doc
