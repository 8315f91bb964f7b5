"""Steering a live run (docs/runs.md, "Steering a live run"): a person's message for a Running or
Pending run goes to the run's inbox at the LLM gateway (agentry_common.steering), which the runtime
reads at its next turn boundary. The gateway is the one place that decides whether the run still
takes messages: once the run has journaled its end it answers `closed`, and the message becomes a
follow-up instead (services/follow_ups.py), so none is lost in the race with the run's end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from pydantic import ValidationError

from agentry_common.models import Phase, Runtime, SteeringSpec, looks_like_secret
from agentry_common.steering import MAX_TEXT_CHARS, STEER_PATH, Inbox, Refusal, SteerAnswer, SteerRequest
from agentry_common.tls import client_context
from agentry_common.tokens import Keyring, mint_service_token

from ..auth import User
from ..schemas.steering import Steered, SteeringMessage, SteeringOut
from ..settings import Settings
from .errors import Conflict, Invalid, OverQuota, Unavailable
from .runs import TERMINAL, RunService

log = logging.getLogger("agentry.api.steering")
Doc = dict[str, Any]
TIMEOUT_SECONDS = 10.0
FINISH_WAIT_SECONDS = 20.0  # a run that closed its inbox is finishing: how long a reply waits for it


class Closed(Exception):
    """The run has ended (its inbox is closed): the message becomes a follow-up."""


class Steering:
    def __init__(
        self, runs: RunService, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.runs, self.settings, self.transport = runs, settings, transport

    async def spec_of(self, user: User, doc: Doc) -> tuple[SteeringSpec, Runtime]:
        agent = await self.runs.store.owned_agent(user.id, doc.get("agentId", ""))
        spec: Doc = (agent or {}).get("spec") or {}
        try:
            steering = SteeringSpec.model_validate(spec.get("steering") or {})
        except ValidationError:
            steering = SteeringSpec()
        return steering, Runtime(spec.get("runtime") or Runtime.AGENTRY.value)

    def refusal(self, doc: Doc, runtime: Runtime) -> str | None:
        """Why this live run cannot be steered; None when it can."""
        name, phase = doc["id"], doc.get("phase") or Phase.PENDING.value
        if not self.settings.gateway_url:
            return (
                f"run {name!r} cannot be steered: steering needs the LLM gateway (it keeps the run's "
                "inbox), and none is configured; reply once the run has finished"
            )
        if runtime is not Runtime.AGENTRY:
            return f"run {name!r} runs runtime {runtime.value}, which cannot be steered (runtime agentry can)"
        if phase == Phase.WAITING_APPROVAL.value:
            return f"run {name!r} is waiting for an approval: approve or deny it first, then send the message"
        return None

    async def send(self, user: User, doc: Doc, text: str, interrupt: bool) -> Steered:
        """The message into the run's inbox (202). Raises Closed (make a follow-up), Conflict (409:
        cannot be steered, or double-texting reject), OverQuota (429: too many queued)."""
        if len(text.strip()) > MAX_TEXT_CHARS:
            raise Invalid(
                ["body", "message"], f"a live run takes messages of at most {MAX_TEXT_CHARS} characters"
            )
        if text and looks_like_secret(text):
            raise Invalid(
                ["body", "message"], "message contains what looks like an API key; use the agent's secrets"
            )
        steering, runtime = await self.spec_of(user, doc)
        problem = self.refusal(doc, runtime)
        if problem is not None:
            raise Conflict(problem)
        uid = doc.get("uid") or await self._uid(doc["id"])
        if not uid:
            raise Conflict(f"run {doc['id']!r} has not been created in the cluster yet: retry in a moment")
        request = SteerRequest(
            namespace=self.settings.namespace,
            execution=doc["id"],
            uid=uid,
            text=text,
            interrupt=interrupt,
            by=user.id,
            pending=steering.pending,
        )
        response = await self._call("POST", json=request.wire())
        if response.status_code == 202:
            answer = SteerAnswer.model_validate(response.json())
            message = SteeringMessage.model_validate(answer.message.model_dump())
            return Steered(message=message, superseded=answer.superseded, pending=steering.pending)
        body = (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )
        reason, detail = body.get("reason"), str(body.get("detail") or response.text[:200])
        if reason == Refusal.CLOSED.value:
            raise Closed(detail)
        if reason == Refusal.PENDING.value:
            raise Conflict(f"run {doc['id']!r}: {detail} (double-texting policy reject)")
        if reason == Refusal.FULL.value:
            raise OverQuota("steering_messages", 0, f"run {doc['id']!r}: {detail}", retry_after=10)
        log.error("steering: the gateway answered %s", response.status_code)
        raise Unavailable(f"the LLM gateway answered {response.status_code}; the message was not sent")

    async def messages(self, user: User, doc: Doc) -> SteeringOut:
        steering, runtime = await self.spec_of(user, doc)
        live = (doc.get("phase") or Phase.PENDING.value) not in TERMINAL
        note = self.refusal(doc, runtime) if live else "the run has finished: a message makes a follow-up"
        out = SteeringOut(
            available=note is None,
            note=note,
            pending=steering.pending,
            onInterrupt=steering.on_interrupt,
            waitSeconds=steering.wait_seconds,
        )
        if not self.settings.gateway_url or not doc.get("uid"):
            return out
        params = {"namespace": self.settings.namespace, "uid": doc["uid"]}
        response = await self._call("GET", params=params)
        if response.status_code == 200:
            inbox = Inbox.model_validate(response.json())
            out.messages = [SteeringMessage.model_validate(m.model_dump()) for m in inbox.messages]
        return out

    async def finished(self, name: str) -> None:
        """Wait for a run whose inbox closed to finish in the cluster (a follow-up continues only a
        finished run); Conflict when it does not within FINISH_WAIT_SECONDS."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINISH_WAIT_SECONDS
        while loop.time() < deadline:
            cr = await self.runs.cluster.get_execution(name)
            if cr is None or ((cr.get("status") or {}).get("phase") or "") in TERMINAL:
                return
            await asyncio.sleep(0.5)
        raise Conflict(f"run {name!r} is finishing: send the message again in a moment to continue it")

    async def _uid(self, name: str) -> str:
        cr = await self.runs.cluster.get_execution(name)
        return str(((cr or {}).get("metadata") or {}).get("uid") or "")

    async def _call(self, method: str, **kwargs: Any) -> httpx.Response:
        assert self.settings.gateway_url  # refusal() said so
        keys = self.settings.token_keys.get_secret_value() if self.settings.token_keys else None
        try:
            keyring = Keyring.from_settings(self.settings.token_keys_dir, keys, self.settings.token_kid)
        except (OSError, ValueError) as exc:
            log.error("steering: no token keys to ask the gateway with: %s", exc)
            raise Unavailable(
                "steering is unavailable: the API has no token keys for the LLM gateway"
            ) from exc
        token = mint_service_token(keyring, "agentry-api:steering", ttl_seconds=60)
        try:
            async with httpx.AsyncClient(
                base_url=self.settings.gateway_url.rstrip("/"),
                headers={"Authorization": f"Bearer {token}"},
                timeout=TIMEOUT_SECONDS,
                transport=self.transport,
                verify=client_context(),
            ) as client:
                response = await client.request(method, STEER_PATH, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("steering: the gateway does not answer: %s", type(exc).__name__)
            raise Unavailable("the LLM gateway does not answer; the message was not sent") from exc
        if response.status_code in (401, 403):
            log.error("steering: the gateway refused the API's service token (%s)", response.status_code)
            raise Unavailable("the LLM gateway refused the API's token: their token keys differ")
        return response
