"""Contracts are written once: outside agentry_common no component spells a contract's value as a
string literal (a Firestore collection, a refusal type, a governance path, a trigger, a condition
reason, the runtime's resume file); each imports the name from agentry_common instead."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agentry_common import constants, governance
from agentry_common.conditions import ConditionType, Reason
from agentry_common.models import Phase, Trigger
from agentry_common.records import Collection

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
COMPONENTS = [
    "llm/agentry_llm",
    "operator/agentry_operator",
    "api/agentry_api",
    "gateway/agentry_gateway",
    "workspace_image/agentry_workspace",
    "cli/agentry_cli",
]
# Values that are also plain words of another namespace (a CR plural or a route: "agents"; a phase:
# "Pending"; Kubernetes' own Job and pod reasons, which the operator reads and names in one module) are
# not checked here: a literal of theirs means something else more often than not.
PLAIN_WORDS = {"users", "tokens", "agents", "executions", "events", "approvals"}
KUBERNETES_OWN = {
    "DeadlineExceeded",
    "BackoffLimitExceeded",
    "Evicted",
    "Unschedulable",
    "Running",
    "Succeeded",
}
CONTRACT_VALUES = {
    **{m.value: f"Collection.{m.name}" for m in Collection if m.value not in PLAIN_WORDS},
    **{m.value: f"RefusalType.{m.name}" for m in governance.RefusalType},
    **{m.value: f"Trigger.{m.name}" for m in Trigger if m is not Trigger.API},  # "API" is prose too
    **{
        m.value: f"Reason.{m.name}"
        for m in Reason
        if m.value not in KUBERNETES_OWN and m.value not in {p.value for p in Phase}
    },
    **{m.value: f"ConditionType.{m.name}" for m in ConditionType if m.value not in KUBERNETES_OWN},
    governance.ADMISSION_PATH: "governance.ADMISSION_PATH",
    governance.RUN_END_PATH: "governance.RUN_END_PATH",
    constants.RESUME_FILE: "constants.RESUME_FILE",
}


def _exempt(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (prose may name a contract) or `__all__` entries
    (names of Python objects that happen to equal a reason, such as ProvidersFailed)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            out.update(id(c) for c in ast.walk(node.value))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def test_no_component_spells_a_contract_value() -> None:
    found: list[str] = []
    for component in COMPONENTS:
        for file in sorted((REPO / component).rglob("*.py")):
            tree = ast.parse(file.read_text(), str(file))
            docs = _exempt(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value in CONTRACT_VALUES
                    and id(node) not in docs
                ):
                    where = f"{file.relative_to(REPO)}:{node.lineno}"
                    found.append(f"{where} {node.value!r} (use {CONTRACT_VALUES[node.value]})")
    assert not found, "contract values spelled as literals:\n" + "\n".join(found)
