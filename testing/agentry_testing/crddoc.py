"""Render docs/crd-reference.md from the canonical CRDs (`make crd-docs`; a test checks it is current)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]  # a checkout: the CRDs live in manifests/, not in a package

CRDS = REPO / "manifests" / "crds"


def _type(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = str(schema.get("type", "object"))
    if kind == "array":
        return f"[]{_type(schema.get('items', {}))}"
    return kind


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "default" in schema:
        parts.append(f"default `{schema['default']}`")
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("maxLength", "max length"),
        ("maxItems", "max items"),
    ):
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    for rule in schema.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts)


def _rows(schema: dict[str, Any], path: str, required: set[str]) -> list[str]:
    rows = []
    for name, sub in schema.get("properties", {}).items():
        where = f"{path}.{name}" if path else name
        desc = " ".join(str(sub.get("description", "")).split())
        req = " (required)" if name in required else ""
        extra = _constraints(sub)
        rows.append(f"| `{where}`{req} | {_type(sub)} | {desc}{' — ' + extra if extra else ''} |")
        inner = sub.get("items", sub) if sub.get("type") == "array" else sub
        rows += _rows(
            inner, where + ("[]" if sub.get("type") == "array" else ""), set(inner.get("required", []))
        )
    return rows


def render(crds: Path = CRDS) -> str:
    out = [
        "# Custom resource reference",
        "",
        "Generated from `manifests/crds/` by `make crd-docs`; do not edit by hand.",
        "",
    ]
    for path in sorted(crds.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        names = crd["spec"]["names"]
        out += [
            f"## {names['kind']} (`{crd['spec']['group']}/{version['name']}`)",
            "",
            " ".join(str(schema.get("description", "")).split()),
            "",
            f"Short names: {', '.join(names.get('shortNames', []))}; "
            f"categories: {', '.join(names.get('categories', []))}.",
            "",
            "| field | type | description |",
            "| --- | --- | --- |",
        ]
        for part in ("spec", "status"):
            sub = schema["properties"][part]
            out += _rows(sub, part, set(sub.get("required", [])))
        out += [
            "",
            "Printer columns: "
            + ", ".join(c["name"] for c in version.get("additionalPrinterColumns", []))
            + ".",
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
