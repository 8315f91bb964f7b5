"""POST /api/agents/{namespace}/{name}/runs: the call every Cloud Scheduler job makes (docs/gke.md, 10).

The caller is not a user: a Google-signed ID token of an allowed service account (`iss`, `aud`,
`email` in `AGENTRY_SCHEDULER_SERVICE_ACCOUNTS`, `email_verified`), checked by a verifier of its own.
The run belongs to the Agent's owner. Off (404) unless `AGENTRY_SCHEDULER_OIDC_AUDIENCE` is set.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, status
from starlette.requests import HTTPConnection

from agentry_common.models import Trigger

from ..deps import StateDep, unauthorized
from ..oidc import InvalidToken
from ..schemas import RunAccepted, Strict
from ..services.errors import Invalid, NotFound

router = APIRouter(prefix="/api/agents", tags=["scheduler"])

SCHEDULE_TIME_HEADER = "X-CloudScheduler-ScheduleTime"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class ScheduleRunIn(Strict):
    trigger: Literal[Trigger.SCHEDULE] = Trigger.SCHEDULE


async def scheduler_caller(conn: HTTPConnection, state: StateDep) -> str:
    """The invoker's service account email, or 404 (endpoint off), 401 (no or bad token), 403."""
    verifier = state.scheduler_verifier
    if verifier is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    scheme, _, credential = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise unauthorized("send 'Authorization: Bearer <Google-signed ID token>'")
    try:
        claims = await verifier.verify(credential.strip())
    except InvalidToken as exc:
        raise unauthorized(f"the scheduler's ID token is not accepted: {exc}") from exc
    email = claims.get("email")
    allowed = {a.strip().lower() for a in state.settings.scheduler_service_accounts}
    if not isinstance(email, str) or email.lower() not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this service account may not start scheduled runs")
    if claims.get("email_verified") not in (True, "true"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the token's email is not verified")
    return email


SchedulerCaller = Annotated[str, Depends(scheduler_caller)]


def tick_time(value: str | None) -> dt.datetime:
    """The tick from the header (RFC 3339; no zone means UTC); absent: now, to the minute."""
    if value is None or not value.strip():
        return dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise Invalid(["header", SCHEDULE_TIME_HEADER], "not an RFC 3339 date-time") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


@router.post(
    "/{namespace}/{name}/runs",
    response_model=RunAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={401: {}, 403: {}, 404: {}},
)
async def scheduled_run(
    namespace: str,
    name: str,
    _caller: SchedulerCaller,
    state: StateDep,
    schedule_time: Annotated[str | None, Header(alias=SCHEDULE_TIME_HEADER)] = None,
    body: ScheduleRunIn | None = None,
) -> RunAccepted:
    """A schedule tick: creates the Execution `scheduled_execution_name(name, tick)` with trigger
    `Schedule` and answers 202; a retried tick answers 202 with the Execution it already created."""
    if namespace != state.settings.namespace or not DNS_SUBDOMAIN.match(name):
        raise NotFound(f"agent {namespace}/{name} not found")
    doc = await state.runs.run_scheduled(name, tick_time(schedule_time))
    return RunAccepted(
        execution=doc["id"], correlationId=doc.get("correlationId") or "", url=f"/api/executions/{doc['id']}"
    )
