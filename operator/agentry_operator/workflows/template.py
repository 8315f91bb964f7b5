"""Step input templates: `{{ params.NAME }}`, `{{ steps.NAME.summary }}`, `{{ steps.NAME.phase }}`,
`{{ steps.NAME.outputs.KEY }}` and `{{ run.name }}`, nothing else. No expression is evaluated: a
reference is looked up or refused, so a template cannot run code in the operator (unlike a Jinja
template outside a sandbox)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PARAM = re.compile(r"params\.([A-Za-z_][A-Za-z0-9_]*)")
_STEP = re.compile(r"steps\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([A-Za-z][\w.]*)")
STEP_FIELDS = ("summary", "phase")
OUTPUTS = "outputs."  # a step field `outputs.KEY`: one of the step's named outputs
_OUTPUT = re.compile(r"outputs\.([A-Za-z_][A-Za-z0-9_]{0,62})")
RUN_NAME = "run.name"


@dataclass(frozen=True)
class Ref:
    """One reference: kind "params" (name), "steps" (name, field) or "run"."""

    kind: str
    name: str = ""
    field: str = ""


def parse(text: str) -> tuple[list[Ref], list[str]]:
    """The references of a template and the problems in it (unclosed tags, unknown forms)."""
    refs: list[Ref] = []
    problems: list[str] = []
    for tag in _TAG.finditer(text):
        ref = _ref(tag.group(1).strip())
        if isinstance(ref, str):
            problems.append(ref)
        else:
            refs.append(ref)
    rest = _TAG.sub("", text)
    if "{{" in rest or "}}" in rest:
        problems.append("an unmatched '{{' or '}}'")
    return refs, problems


def _ref(expr: str) -> Ref | str:
    if expr == RUN_NAME:
        return Ref("run")
    if m := _PARAM.fullmatch(expr):
        return Ref("params", m.group(1))
    if m := _STEP.fullmatch(expr):
        if m.group(3) not in STEP_FIELDS and not _OUTPUT.fullmatch(m.group(3)):
            return f"'{{{{ {expr} }}}}': a step offers summary, phase and outputs.KEY"
        return Ref("steps", m.group(1), m.group(3))
    return (
        f"'{{{{ {expr} }}}}' is not params.NAME, steps.NAME.summary, steps.NAME.phase, "
        "steps.NAME.outputs.KEY or run.name"
    )


@dataclass(frozen=True)
class Values:
    """What references resolve to: parameters, each step's fields (`outputs.KEY` among them), the
    run's name."""

    params: Mapping[str, str]
    steps: Mapping[str, Mapping[str, str]]
    run: str


def render(text: str, values: Values) -> str:
    """The template with every reference replaced; a reference without a value becomes empty (the
    webhook refuses unknown ones, so only a step not run, e.g. skipped, lacks a summary)."""

    def value(tag: re.Match[str]) -> str:
        ref = _ref(tag.group(1).strip())
        if isinstance(ref, str):
            return tag.group(0)
        if ref.kind == "run":
            return values.run
        if ref.kind == "params":
            return values.params.get(ref.name, "")
        return values.steps.get(ref.name, {}).get(ref.field, "")

    return _TAG.sub(value, text)
