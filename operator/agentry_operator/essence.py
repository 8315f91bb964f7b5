"""kopf's diff base, built only where a handler reads it.

kopf builds every event's "essence" (a deep copy of the whole object, status and all, then pruned) to
diff it with the last handled one, for every kind it watches. Only create/update/resume/delete
handlers read that diff, and only Agents have them: Executions, Jobs, Pods and the workflow kinds are
handled on raw events. A profile of a restart holding 10,000 Executions with their Jobs and Pods put a
quarter of the operator's CPU in those copies, ahead of the listings' JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

from agentry_common import constants as c

# The kinds with changing handlers (main.py: on.create/update/resume/delete): (group, kind).
DIFFED_KINDS = frozenset({(c.GROUP, c.AGENT_KIND)})


def group_kind(body: kopf.Body) -> tuple[str, str] | None:
    """(group, kind) of a watched body; None when the body does not say (then it is diffed)."""
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not api_version or not kind:
        return None
    return (str(api_version).rpartition("/")[0], str(kind))


class HandledEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, with shortcuts that change no diff kopf acts on: a kind without
    changing handlers has no stored essence and gets an empty one (kopf reads its diff for nothing),
    and a diffed kind's essence is built without copying its status first (kopf drops the status)."""

    def __init__(self, *, kinds: frozenset[tuple[str, str]] = DIFFED_KINDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kinds = kinds

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """None (nothing stored) for a kind without changing handlers, without looking: kopf asks on
        every event, and building the annotation's key and reading it through kopf's views was 5% of
        the operator's CPU while 1,000 runs started (py-spy on `python -m bench`)."""
        which = group_kind(body)
        if which is not None and which not in self.kinds:
            return None
        return super().fetch(body=body)

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        fields = list(extra_fields or [])
        if fields:  # a handler on a status or metadata field: kopf's own build keeps it
            return super().build(body=body, extra_fields=fields)
        which = group_kind(body)
        if which is not None and which not in self.kinds:
            return kopf.BodyEssence()
        meta = body.get("metadata") or {}
        kept = {k: v for k, v in body.items() if k not in ("status", "metadata")}
        kept["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, kept)))
