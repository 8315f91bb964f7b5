"""Follow-ups at the run gate: find the parent an Execution's spec.parentRef names, apply the rule
(builders/follow_up.py), and link the child to its parent with the LABEL_PARENT label (the API's
thread view lists a parent's continuations by it)."""

from __future__ import annotations

from lightkube import AsyncClient

from agentry_common import constants as c
from agentry_common.policy import is_secret_name

from .. import kube
from ..builders.follow_up import Doc, Parent, follow_up_error, follow_up_held, parent_name, parent_of, text
from ..builders.run_gate import Held
from ..settings import Settings
from .state import State


async def find_parent(client: AsyncClient, state: State, body: Doc) -> Doc | None:
    """The Execution spec.parentRef names, in the child's namespace (the cache, else a read); None
    when there is none (or the name is one no object can have)."""
    name, ns = parent_name(body), text(body, "metadata", "namespace")
    if not name or not is_secret_name(name):  # a DNS-1123 subdomain, as every object's name
        return None
    cached = state.executions.get((ns, name))
    return cached if cached is not None else await kube.get_or_none(client, kube.Execution, name, ns)


async def follow_up_gate(
    client: AsyncClient, config: Settings, state: State, body: Doc
) -> tuple[Held | None, Parent | None]:
    """(why the run may not start, None) or (None, the parent it continues; None for a run that is no
    follow-up). An accepted follow-up is labelled with its parent's name before its Job exists."""
    if not parent_name(body):
        return None, None
    parent = await find_parent(client, state, body)
    held = follow_up_held(body, parent, config.governed)
    if held is not None or parent is None:
        return held, None
    found = parent_of(parent)
    value = label_value(found.name)
    if text(body, "metadata", "labels", c.LABEL_PARENT) != value:
        patch: dict[str, object] = {"metadata": {"labels": {c.LABEL_PARENT: value}}}
        name, ns = text(body, "metadata", "name"), text(body, "metadata", "namespace")
        await kube.patch_merge(client, kube.Execution, name, ns, patch)
    return None, found


def label_value(name: str) -> str:
    """A name as a label value (at most 63 characters, ending alphanumeric)."""
    return name[:63].rstrip("-.")


async def resumed_parent(client: AsyncClient, config: Settings, state: State, body: Doc) -> Parent | None:
    """The parent of a follow-up resumed after an approval, if it still qualifies (the resumed pod
    may read its journal again); None otherwise: the pod resumes from its own state and journal."""
    if not parent_name(body):
        return None
    parent = await find_parent(client, state, body)
    if parent is None or follow_up_error(body, parent, config.governed):
        return None
    return parent_of(parent)
