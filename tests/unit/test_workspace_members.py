"""Each workspace member declares what it imports: every third-party module a member's package imports
comes from a distribution in that member's locked dependencies (`uv export --package`, what its image
installs), and every other Agentry package it imports is one of its declared members. A missing
declaration fails here, not in an image build or a pod."""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
ROOT = tomllib.loads((REPO / "pyproject.toml").read_text())
MEMBERS = ROOT["tool"]["uv"]["workspace"]["members"]


def _project(member: str) -> dict[str, object]:
    return tomllib.loads((REPO / member / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def _package(member: str) -> Path:
    return next(p for p in sorted((REPO / member).glob("agentry_*")) if (p / "__init__.py").exists())


def _imports(package: Path) -> set[str]:
    """Absolute imports, with `from a import b` also as `a.b` (b may be a module of a namespace package)."""
    found: set[str] = set()
    for file in package.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@cache
def _owners() -> dict[str, str]:
    """Module file -> its distribution. Paths as the import system and the distributions both spell
    them (under the same site-packages), so none is resolved: 30,000 resolutions took 11 s."""
    return {
        os.path.normpath(str(f.locate())): re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        for dist in md.distributions()
        for f in dist.files or []
        if f.suffix in (".py", ".so")
    }


def _distribution(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None  # `from a import name`, where name is not a module
    if spec is None or spec.origin in (None, "namespace", "built-in", "frozen"):
        return None
    return _owners().get(os.path.normpath(spec.origin))


def _locked(member: str) -> set[str]:
    """The member's locked closure; with its extras if it has any (common's `kube`: resources.py)."""
    name = str(_project(member)["name"])
    extras = ["--all-extras"] if _project(member).get("optional-dependencies") else []
    out = subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-hashes",
            "--no-header",
            "--no-dev",
            "--quiet",
            "--package",
            name,
            *extras,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in out.splitlines() if "==" in line}


@pytest.mark.parametrize("member", MEMBERS)
def test_every_import_is_a_locked_dependency_of_the_member(member: str) -> None:
    package = _package(member)
    locked = _locked(member)
    declared = {re.split(r"[\[<>=!~ ]", str(d))[0] for d in _project(member)["dependencies"]}  # type: ignore[attr-defined]
    missing: dict[str, str] = {}
    for module in sorted(_imports(package)):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == package.name:
            continue
        if top.startswith("agentry_"):
            if top.replace("_", "-") not in declared:
                missing[module] = f"{top.replace('_', '-')} (an Agentry member, not declared)"
            continue
        dist = _distribution(module)
        if dist is not None and dist not in locked and not dist.startswith("agentry-"):
            missing[module] = dist
    assert not missing, f"{member}: imports not in its dependencies: {missing}"


def test_members_are_the_components() -> None:
    names = {str(_project(m)["name"]) for m in MEMBERS}
    assert names == {
        "agentry-common",
        "agentry-llm",
        "agentry-operator",
        "agentry-api",
        "agentry-gateway",
        "agentry-workspace",
        "agentry-localcluster",
        "agentry-testing",
        "agentry-cli",
    }
    runtime = _locked("workspace_image")
    for server_only in ("fastapi", "kopf", "lightkube", "google-cloud-firestore"):
        assert server_only not in runtime, f"the run image would install {server_only}"
    # The official MCP SDK (the runtime's MCP client) requires uvicorn and starlette for its server
    # half; they come in only through it, and the import contract keeps the runtime off them.
    assert "uvicorn" not in runtime or "mcp" in runtime
