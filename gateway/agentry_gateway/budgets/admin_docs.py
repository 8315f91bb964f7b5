"""Admin-managed policies and throttles (Firestore documents the API writes) merged with the
governance file's policies (pure).

The governance file wins a name: an admin document naming one of its policies is skipped. A document
that does not validate is skipped with its error; the others apply. Lifted and expired throttles
are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agentry_common.governance import ADMIN_SCOPES, PolicySpec, ThrottleSpec

from .policies import BudgetPolicy
from .throttles import ManualThrottle

Docs = Iterable[tuple[str, dict[str, Any]]]  # (document id, data)
_POLICY_KEYS = tuple(PolicySpec.model_fields)
_THROTTLE_KEYS = ("id", "scope", "subject", "mode", "reason", "until", "by")


@dataclass
class Merged:
    policies: list[BudgetPolicy]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (document, why)
    keep_seconds: int = 0  # the longest rolling window of them all


def _error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        return f"{where}: {first['msg']}"
    return str(exc)


def policy_of(doc_id: str, data: dict[str, Any]) -> BudgetPolicy:
    """An admin's policy document as a policy; ValueError/ValidationError when it is not one."""
    policy = BudgetPolicy.model_validate({k: data[k] for k in _POLICY_KEYS if k in data})
    if policy.scope not in ADMIN_SCOPES:
        raise ValueError(f"scope: an admin policy may not have scope {policy.scope.value}")
    if policy.name != doc_id:
        raise ValueError(f"name: {policy.name!r} is not the document's id {doc_id!r}")
    return policy


def throttle_of(doc_id: str, data: dict[str, Any]) -> ManualThrottle:
    spec = ThrottleSpec.model_validate({k: data[k] for k in _THROTTLE_KEYS if k in data})
    if spec.scope not in ADMIN_SCOPES:
        raise ValueError(f"scope: a throttle may not have scope {spec.scope.value}")
    return ManualThrottle.of(spec)


def _rolling(policies: Sequence[BudgetPolicy]) -> int:
    windows = [limit.window_spec for p in policies for limit in p.limits]
    return max([0, *(w.seconds for w in windows if w.kind == "rolling")])


def merge(config: Sequence[BudgetPolicy], policies: Docs, throttles: Docs, now: float) -> Merged:
    """The file's policies, then each valid admin policy, then each active throttle."""
    out = Merged(list(config))
    taken = {p.name for p in config}
    for doc_id, data in policies:
        try:
            policy = policy_of(doc_id, data)
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            out.skipped.append((f"policy {doc_id}", _error(exc)))
            continue
        if policy.name in taken:
            out.skipped.append((f"policy {doc_id}", "name: the governance file has a policy of that name"))
            continue
        taken.add(policy.name)
        out.policies.append(policy)
    for doc_id, data in throttles:
        if data.get("active") is False:
            continue
        try:
            throttle = throttle_of(doc_id, data)
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            out.skipped.append((f"throttle {doc_id}", _error(exc)))
            continue
        if throttle.active(now):
            out.policies.append(throttle)
    out.keep_seconds = _rolling(out.policies)
    return out


def published(config: Sequence[BudgetPolicy]) -> list[dict[str, Any]]:
    """The governance file's policies as the API shows them (read-only), JSON-ready."""
    return [p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in config]
