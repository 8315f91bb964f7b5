"""The README's layout table, generated from the tree: `python hack/layout.py [--check]`.

Workspace members (pyproject.toml's [tool.uv.workspace]) are described by their own pyproject
`description`; other top-level directories by OTHER below. --check fails when README.md is stale or a
top-level directory is described nowhere, so the table cannot quietly omit a component.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- layout:begin (hack/layout.py) -->", "<!-- layout:end -->"
OTHER = {
    "manifests": "the canonical CRDs (`crds/`), `install.yaml` rendered from the chart, `samples/` agents",
    "charts": "the Helm chart (`charts/agentry`, strict `values.schema.json`)",
    "images": "the Dockerfile of the operator, API and gateway images (one recipe, one member each)",
    "hack": "build scripts: Kubernetes binaries, images, the install manifest, this table",
    "tests": "`unit/`, `integration/`, `e2e/` by component; real-server fixtures in `fixtures/`",
    "bench": "benchmarks printing ratios to a baseline measured in the same run (`make bench`)",
    "docs": "architecture (the component map), operations, security, CR reference, HTTP API, governance, "
    "the `agentry` CLI (cli.md), MCP tools (mcp.md)",
    "artifacts": "dashboard screenshots the e2e tests write",
}
IGNORED = {
    ".git",
    ".venv",
    ".github",
    ".ci",
    ".dev",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
}


def members() -> dict[str, tuple[str, str, str]]:
    """directory -> (distribution, import package, description)."""
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    out: dict[str, tuple[str, str, str]] = {}
    for member in root["tool"]["uv"]["workspace"]["members"]:
        project = tomllib.loads((REPO / member / "pyproject.toml").read_text())["project"]
        package = next(
            p.name for p in sorted((REPO / member).glob("agentry_*")) if (p / "__init__.py").exists()
        )
        out[member] = (project["name"], package, project["description"])
    return out


def table() -> str:
    rows = ["| path | what |", "| --- | --- |"]
    rows += [f"| `{d}/{pkg}/` | **{name}**: {desc} |" for d, (name, pkg, desc) in members().items()]
    rows += [f"| `{d}/` | {OTHER[d]} |" for d in OTHER]
    return "\n".join([BEGIN, *rows, END])


def undescribed() -> list[str]:
    known = set(members()) | set(OTHER) | IGNORED
    return sorted(
        p.name for p in REPO.iterdir() if p.is_dir() and p.name not in known and not p.name.startswith(".")
    )


def main(argv: list[str]) -> int:
    readme = (REPO / "README.md").read_text()
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    fresh = head + table() + tail
    missing = undescribed()
    if missing:
        print(f"hack/layout.py: top-level directories described nowhere: {missing} (add them to OTHER)")
        return 1
    if "--check" in argv:
        if fresh != readme:
            print("README.md's layout table is stale: run `python hack/layout.py`")
            return 1
        return 0
    (REPO / "README.md").write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
