"""Checks of a Workflow's spec that its schema cannot make: names, dependencies, cycles, templates,
parameters. Each error names the field, e.g. `spec.steps[2].dependsOn: ...` (the webhook joins them)."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from typing import Any

from agentry_common import constants as c
from agentry_common.policy import AgentPolicy, priority_violations
from agentry_common.workflows import StepWhen

from . import template

Doc = Mapping[str, Any]


def steps_of(spec: Doc) -> list[Doc]:
    return [s for s in spec.get("steps") or [] if isinstance(s, Mapping)]


def deps_of(step: Doc) -> list[str]:
    return [str(d) for d in step.get("dependsOn") or []]


def spec_errors(spec: Doc) -> list[str]:
    """Why a Workflow spec is refused (empty: accepted)."""
    steps = steps_of(spec)
    errors = _name_errors(steps) + _dependency_errors(steps)
    if errors:
        return errors  # a cycle or template check on a broken graph would only repeat them
    errors = _cycle_errors(steps)
    if errors:
        return errors
    return _template_errors(steps, {str(p.get("name")) for p in spec.get("parameters") or []})


def _name_errors(steps: Sequence[Doc]) -> list[str]:
    first: dict[str, int] = {}
    errors = []
    for i, step in enumerate(steps):
        name = str(step.get("name") or "")
        if name in first:
            errors.append(f'spec.steps[{i}].name: step "{name}" is already spec.steps[{first[name]}]')
        first.setdefault(name, i)
    return errors


def _dependency_errors(steps: Sequence[Doc]) -> list[str]:
    names = {str(s.get("name")) for s in steps}
    errors = []
    for i, step in enumerate(steps):
        unknown = [d for d in deps_of(step) if d not in names]
        if unknown:
            errors.append(f"spec.steps[{i}].dependsOn: unknown step(s) {', '.join(unknown)}")
        if str(step.get("name")) in deps_of(step):
            errors.append(f"spec.steps[{i}].dependsOn: a step cannot depend on itself")
        when = step.get("when") or StepWhen.SUCCEEDED
        if when != StepWhen.SUCCEEDED and not deps_of(step):
            errors.append(
                f"spec.steps[{i}].when: {when} is a condition on dependencies, but dependsOn is empty"
            )
    return errors


def _cycle_errors(steps: Sequence[Doc]) -> list[str]:
    sorter = graphlib.TopologicalSorter({str(s["name"]): deps_of(s) for s in steps})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = [str(n) for n in exc.args[1]]
        index = next(i for i, s in enumerate(steps) if s["name"] == cycle[0])
        return [f"spec.steps[{index}].dependsOn: a dependency cycle {' -> '.join(cycle)}"]
    return []


def order(steps: Sequence[Doc]) -> list[str]:
    """Step names in a topological order (dependencies first); the spec must be valid."""
    return list(graphlib.TopologicalSorter({str(s["name"]): deps_of(s) for s in steps}).static_order())


def ancestors(steps: Sequence[Doc]) -> dict[str, set[str]]:
    """Every step's dependencies, direct or not; the spec must be acyclic."""
    by_name = {str(s["name"]): s for s in steps}
    found: dict[str, set[str]] = {}
    for name in order(steps):
        found[name] = set()
        for dep in deps_of(by_name[name]):
            found[name] |= {dep, *found[dep]}
    return found


def _template_errors(steps: Sequence[Doc], params: set[str]) -> list[str]:
    above = ancestors(steps)
    outputs = {str(s["name"]): {str(o) for o in s.get("outputs") or []} for s in steps}
    errors = []
    for i, step in enumerate(steps):
        refs, problems = template.parse(str(step.get("input") or ""))
        problems += [_ref_problem(ref, params, above[str(step["name"])], outputs) for ref in refs]
        errors += [f"spec.steps[{i}].input: {p}" for p in problems if p]
    return errors


def _ref_problem(
    ref: template.Ref, params: set[str], above: set[str], outputs: Mapping[str, set[str]]
) -> str:
    if ref.kind == "params" and ref.name not in params:
        return f"{{{{ params.{ref.name} }}}}: the Workflow has no parameter {ref.name}"
    if ref.kind != "steps":
        return ""
    if ref.name not in above:
        return (
            f"{{{{ steps.{ref.name}.{ref.field} }}}}: {ref.name} is not a dependency of this step "
            "(direct or not), so its result may not exist yet"
        )
    key = ref.field.removeprefix(template.OUTPUTS)
    if ref.field.startswith(template.OUTPUTS) and key not in outputs.get(ref.name, set()):
        declared = ", ".join(sorted(outputs.get(ref.name, set()))) or "none"
        what = f"{{{{ steps.{ref.name}.{ref.field} }}}}"
        return f"{what}: step {ref.name} declares no output {key} (its outputs: {declared})"
    return ""


def agent_errors(spec: Doc, present: Mapping[str, bool]) -> list[str]:
    """Steps referencing an Agent that `present` says does not exist in the namespace."""
    return [
        f"spec.steps[{i}].agentRef.name: no Agent {step['agentRef']['name']} in this namespace"
        for i, step in enumerate(steps_of(spec))
        if not present.get(str((step.get("agentRef") or {}).get("name")), True)
    ]


def owner_errors(spec: Doc, owner: str, owners: Mapping[str, str | None]) -> list[str]:
    """Steps naming an Agent of another owner than the Workflow's (`owners`: each Agent's owner label,
    "" for none, None when absent): a Workflow runs only its owner's Agents, and Agents without owner
    (the run gate refuses the step's run otherwise)."""
    return [
        f"spec.steps[{i}].agentRef.name: Agent {name} has another owner than this Workflow "
        f"(metadata.labels.{c.LABEL_OWNER}); a Workflow runs only its owner's Agents"
        for i, step in enumerate(steps_of(spec))
        if (found := owners.get(name := str((step.get("agentRef") or {}).get("name")))) and found != owner
    ]


def priority_errors(spec: Doc, policy: AgentPolicy) -> list[str]:
    """Step priorities (their Executions' spec.priority) within the policy's range, checked here so
    that a run does not meet the refusal at its step's creation."""
    return [
        str(v)
        for i, step in enumerate(steps_of(spec))
        if isinstance(step.get("priority"), int)
        for v in priority_violations(step["priority"], policy, ("spec", "steps", i, "priority"))
    ]


def parameter_values(workflow: Doc, given: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """A run's parameter values (given, then defaults) and the errors: unknown names, missing
    required ones. `workflow` is the Workflow object (its name goes in the messages)."""
    name = workflow.get("metadata", {}).get("name", "")
    declared = {str(p["name"]): p for p in (workflow.get("spec") or {}).get("parameters") or []}
    errors = [
        f"spec.parameters.{key}: Workflow {name} has no parameter {key}"
        for key in sorted(given)
        if key not in declared
    ]
    values: dict[str, str] = {}
    for key, param in declared.items():
        if key in given:
            values[key] = str(given[key])
        elif "default" in param:
            values[key] = str(param["default"])
        else:
            errors.append(f"spec.parameters.{key}: required by Workflow {name} (it has no default)")
    return values, errors
