"""What to do when the API server refuses to create a run's child (Job, token Secret, ConfigMap).

Pure: no API calls; unit-tested without a cluster. A refusal that the same request would meet again
(the object is invalid, or a policy forbids it) ends the run `Failed` with reason `InvalidJob`; one
that goes away by itself (quota freed by other runs, the server busy or down) is retried with
back-off (controller/queue.py).
"""

from __future__ import annotations

import enum
import re
from typing import Any

MAX_API_MESSAGE = 1024

# 400 BadRequest, 413 too large, 422 Invalid: the same object is refused again, whatever the wait.
PERMANENT_CODES = frozenset({400, 413, 422})
# RBAC's 403 ("User ... cannot create resource ..."): the operator's permissions, fixed by whoever
# installs it, not by the run's spec; retried, so that runs resume once the Role is there.
_RBAC = re.compile(r'\bUser "[^"]*" cannot \w+ resource\b')

# Where a field of the refused Job comes from, for the person who has to change it.
_ORIGINS = (
    ("resources", "the Agent's spec.resources"),
    (
        "annotations",
        "the run's inputs in pod annotations: the Agent's spec.instructions and spec, the Execution's "
        "spec.input",
    ),
    ("env", "the Agent's spec.secrets"),
)


class Action(enum.Enum):
    FAIL = "fail"  # permanent: the Execution ends Failed (InvalidJob), never retried
    WAIT = "wait"  # quota: Pending (QuotaExceeded) and retried with backoff
    RETRY = "retry"  # transient: retried with backoff


def classify(code: int | None, message: str) -> Action:
    """The action for an API error of a create, from its HTTP code and the server's message.

    403 is a permanent refusal (an admission plugin or webhook denied the object: a LimitRange, a
    policy, a namespace being deleted) except for two cases that change without the spec changing:
    a ResourceQuota used up ("exceeded quota": other runs end and free it; or not yet counted by
    its controller, "status unknown for quota") and an RBAC denial of the operator itself. 409 never
    gets here (create_or_adopt adopts); 429, 5xx and the rest are retried.
    """
    if code in PERMANENT_CODES:
        return Action.FAIL
    if code == 403:
        if "exceeded quota" in message or "status unknown for quota" in message:
            return Action.WAIT
        if _RBAC.search(message):
            return Action.RETRY
        return Action.FAIL
    return Action.RETRY


def causes(status: dict[str, Any]) -> list[str]:
    """The fields the API server named (status.details.causes[].field), in order, without repeats."""
    found: list[str] = []
    for cause in (status.get("details") or {}).get("causes") or []:
        field = cause.get("field")
        if field and field not in found:
            found.append(field)
    return found


def describe(kind: str, name: str, status: dict[str, Any]) -> str:
    """A message naming the refused object, its fields (and where they come from) and the server's
    own words. It holds no value of a Secret: the server's message about a Secret names keys only."""
    code, reason = status.get("code"), status.get("reason") or ""
    fields = causes(status)
    text = f"the API server refused to create {kind} {name} (HTTP {code} {reason})".replace(" )", ")")
    if fields:
        text += f"; field {', '.join(fields)}"
        origins = [origin for key, origin in _ORIGINS if any(key in f for f in fields)]
        if origins:
            text += f" (from {'; '.join(origins)})"
    api_message = str(status.get("message") or "").strip()
    if len(api_message) > MAX_API_MESSAGE:
        api_message = api_message[:MAX_API_MESSAGE] + "..."
    return f"{text}: {api_message}" if api_message else text
