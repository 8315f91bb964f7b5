"""Admin-managed budgets: the documents the API writes for the gateway and what it shows (pure).

Policies live in `budgetPolicies/<name>`, throttles in `budgetThrottles/<id>` (agentry_common.
governance); every change writes an entry in `budgetAudit` in the same commit: who, what, when, the
document before and after (budget documents hold no secret). The gateway reads both collections
every few seconds (docs/governance.md, "Budgets set by admins")."""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import secrets
from collections.abc import Iterable
from typing import Any

from agentry_common.governance import INSTALLATION_SUBJECT, Scope

from ...auth import User, owner_label
from ...schemas.budgets import PolicyIn, PolicyOut, PolicyUpdateIn, ThrottleIn, ThrottleOut
from ...storage import now_iso
from ..errors import Invalid

Doc = dict[str, Any]


def policy_doc(name: str, body: PolicyUpdateIn, actor: str) -> Doc:
    """The stored policy: its spec as the gateway reads it, and who made and changed it (an update
    keeps the stored createdBy/createdAt)."""
    spec = body.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"name"})
    now = now_iso()
    return {"name": name, **spec, "createdBy": actor, "createdAt": now, "updatedBy": actor, "updatedAt": now}


def new_policy_doc(body: PolicyIn, actor: str, config_names: Iterable[str]) -> Doc:
    if body.name in set(config_names):
        raise Invalid(["body", "name"], f"the gateway's governance file has a policy named {body.name!r}")
    return policy_doc(body.name, body, actor)


def policy_out(doc: Doc, source: str) -> PolicyOut:
    return PolicyOut(
        name=str(doc.get("name", "")),
        scope=str(doc.get("scope", "")),
        match=str(doc.get("match", "*")),
        limits=list(doc.get("limits") or []),
        source="config" if source == "config" else "admin",
        editable=source != "config",
        **{k: doc.get(k) for k in ("createdBy", "createdAt", "updatedBy", "updatedAt")},
    )


def could_be_user_id(text: str) -> bool:
    """Worth looking up in `users` (a pattern or a path-like string never names a user)."""
    return re.fullmatch(r"[A-Za-z0-9_.@-]{1,128}", text) is not None


def throttle_subject(scope: str, subject: str, namespace: str, is_user: bool) -> tuple[str, str | None]:
    """The gateway's subject key for what the admin typed, and the user id when it named one."""
    if scope == Scope.INSTALLATION.value:
        return INSTALLATION_SUBJECT, None
    if scope == Scope.USER.value and is_user:
        return owner_label(subject), subject  # budgets count a user by their owner label
    if scope == Scope.AGENT.value and "/" not in subject:
        return f"{namespace}/{subject}", None  # agents the API creates live in its namespace
    return subject, None


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def throttle_doc(body: ThrottleIn, subject: str, user_id: str | None, actor: str, now: float) -> Doc:
    until: float | None = None
    if body.until is not None:
        if body.until.tzinfo is None:
            raise Invalid(["body", "until"], "give a time zone (e.g. 2025-05-20T18:00:00Z)")
        until = body.until.timestamp()
        if until <= now:
            raise Invalid(["body", "until"], "must be in the future (omit it: until lifted)")
    return {
        "id": "t-" + secrets.token_hex(6),
        "scope": body.scope,
        "subject": subject,
        "userId": user_id,
        "mode": body.mode.value,
        "reason": body.reason.strip(),
        "until": until,
        "by": actor,
        "active": True,
        "createdBy": actor,
        "createdAt": now_iso(),
        "liftedBy": None,
        "liftedAt": None,
    }


def throttle_out(doc: Doc) -> ThrottleOut:
    until = doc.get("until")
    return ThrottleOut(
        id=str(doc["id"]),
        scope=str(doc.get("scope", "")),
        subject=str(doc.get("subject", "")),
        userId=doc.get("userId"),
        mode=str(doc.get("mode", "")),
        reason=str(doc.get("reason", "")),
        until=_iso(float(until)) if isinstance(until, int | float) else None,
        active=bool(doc.get("active")),
        createdBy=str(doc.get("createdBy", "")),
        createdAt=str(doc.get("createdAt", "")),
        liftedBy=doc.get("liftedBy"),
        liftedAt=doc.get("liftedAt"),
    )


def in_force(doc: Doc, now: float) -> bool:
    until = doc.get("until")
    return bool(doc.get("active")) and (not isinstance(until, int | float) or now < until)


def user_subjects(user: User, agents: Iterable[Doc], namespace: str) -> list[tuple[str, str]]:
    """Every (scope, subject) the caller's calls are charged to (agentry_common.governance rule)."""
    out = [("user", user.owner_label), ("namespace", namespace), ("installation", INSTALLATION_SUBJECT)]
    for agent in agents:
        out.append(("agent", f"{namespace}/{agent['id']}"))
        if agent.get("source") == "cluster":  # kubectl agents carry no owner label
            out.append(("user", f"ns:{namespace}"))
    return out


def applies_to(doc: Doc, subjects: Iterable[tuple[str, str]]) -> bool:
    pattern = str(doc.get("subject", ""))
    return any(scope == doc.get("scope") and fnmatch.fnmatchcase(key, pattern) for scope, key in subjects)


def audit_entry(actor: User, action: str, target: str, after: Doc | None = None) -> Doc:
    """An audit record; the store fills `before` (and `after`) from what it read in its transaction."""
    return {
        "id": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(4),
        "at": now_iso(),
        "actor": actor.id,
        "actorKind": actor.kind,
        "action": action,
        "target": target,
        "before": None,
        "after": after,
    }
