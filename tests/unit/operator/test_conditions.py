"""Every condition type and reason the operator writes is a member of agentry_common.conditions.

An AST scan of the operator's source: no reason or condition type is written as a string literal (a
value of the enums may appear only as a named module constant, for Kubernetes' own reasons the
operator reads, such as a Job's `DeadlineExceeded`), and the places that take a reason never get one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from agentry_common.conditions import ConditionType, Reason
from agentry_common.exitcodes import REASONS
from agentry_operator.conditions import set_condition

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
OPERATOR = ROOT / "operator" / "agentry_operator"
DOCS = ROOT / "docs"
WRITTEN = {m.value for m in Reason} | {m.value for m in ConditionType}

# Calls whose argument at this position (or keyword) is a reason or condition type the operator writes.
REASON_ARGS: dict[str, tuple[tuple[int, str], ...]] = {
    "set_condition": ((1, "type_"), (3, "reason")),
    "get_condition": ((1, "type_"),),
    "Observed": ((1, "reason"),),
    "Verdict": ((2, "reason"),),
    "decide": ((4, "reason"),),  # handlers/outcome.py: decide(client, state, body, phase, reason, ...)
    "BackendError": ((0, "reason"),),
}


def _sources() -> list[tuple[Path, ast.Module]]:
    files = sorted(OPERATOR.rglob("*.py"))
    assert files, OPERATOR
    return [(path, ast.parse(path.read_text(), str(path))) for path in files]


def _named_constants(tree: ast.Module) -> set[int]:
    """ids of the literals assigned to module-level UPPER_CASE names (tuples included)."""
    found: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and all(isinstance(t, (ast.Name, ast.Tuple)) for t in node.targets):
            names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            if all(n.isupper() for n in names):
                found |= {id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    return found


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def test_no_reason_or_condition_type_is_a_string_literal() -> None:
    found = []
    for path, tree in _sources():
        named = _named_constants(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in WRITTEN
                and id(node) not in named
            ):
                found.append(f"{_where(path, node)}: {node.value!r}")
    assert not found, "use agentry_common.conditions.Reason/ConditionType:\n" + "\n".join(found)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_literal(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def test_reasons_are_written_from_the_enums() -> None:
    """set_condition, Observed, Verdict, decide, BackendError and `"reason":` keys take no literal."""
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for pos, kw in REASON_ARGS.get(_callee(node), ()):
                    args = [a for a in node.args[pos : pos + 1]] + [
                        k.value for k in node.keywords if k.arg == kw
                    ]
                    found += [f"{_where(path, a)}: {_callee(node)}" for a in args if _is_literal(a)]
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "reason" and _is_literal(value):
                        found.append(f"{_where(path, value)}: a 'reason' key")
    assert not found, "a reason or condition type written as a literal:\n" + "\n".join(found)


def test_the_runtimes_exit_reasons_are_members() -> None:
    assert {reason for reason, _ in REASONS.values()} <= {m.value for m in Reason}


def test_set_condition_writes_plain_strings() -> None:
    [cond] = set_condition(None, ConditionType.READY, True, Reason.RECONCILED, now="t")
    assert (type(cond["type"]), type(cond["reason"])) == (str, str)
    assert (cond["type"], cond["reason"]) == ("Ready", "Reconciled")


def test_the_docs_name_each_reason() -> None:
    docs = "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))
    named = set(re.findall(r"\b[A-Z][A-Za-z]+\b", docs))
    missing = sorted(m.value for m in Reason if m.value not in named)
    assert not missing, f"reasons no page of docs/ names (e.g. docs/operations.md): {missing}"
