"""`agentry agents list|get|apply|memory`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ..output import Column, Format, emit, field
from ..session import InputError, OutputOption, resolve_agent, segment, session_of

app = typer.Typer(help="Agents: list, show, create or update from a manifest.", no_args_is_help=True)

COLUMNS = (
    Column("ID", field("id")),
    Column("NAME", field("name")),
    Column("SOURCE", field("source")),
    Column("READY", field("status", "ready")),
    Column("MODEL", field("status", "model")),
    Column("SCHEDULE", field("spec", "schedule", "cron")),
    Column("LAST RUN", field("status", "lastExecution", "phase")),
    Column("SYNC", field("sync", "state")),
)

RESULT = (Column("ID", field("id")), Column("NAME", field("name")), Column("ACTION", field("action")))


@app.command("list")
def list_agents(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Your agents (and, for the admin, those created with kubectl)."""
    session = session_of(ctx)
    if session.cluster_mode:
        from ..cluster import agent_row

        crs = session.cluster().agents()
        emit(
            {"items": crs} if output is not Format.TABLE else {"items": [agent_row(a) for a in crs]},
            output,
            COLUMNS,
            rows_of="items",
        )
        return
    items = session.api().pages("/api/agents", {"limit": 100})
    emit({"items": items}, output, COLUMNS, rows_of="items")


@app.command("get")
def get_agent(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="agent id or name")],
    output: OutputOption = Format.TABLE,
) -> None:
    """One agent: definition, status, sync state."""
    session = session_of(ctx)
    if session.cluster_mode:
        emit(session.cluster().agent(agent), output)
        return
    api = session.api()
    emit(api.get(f"/api/agents/{segment(resolve_agent(api, agent))}"), output)


def agent_body(doc: Any, where: str) -> dict[str, Any]:
    """`{name, spec}` from an Agent manifest (kind Agent, metadata.name) or an API body (pure)."""
    if not isinstance(doc, Mapping):
        raise InputError(f"{where}: expected a mapping (an Agent manifest or {{name, spec}})")
    if "kind" in doc or "metadata" in doc:
        if doc.get("kind") != "Agent":
            raise InputError(f"{where}: kind must be Agent, not {doc.get('kind')!r}")
        metadata = doc.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
    else:
        name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: metadata.name (or name) is required")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise InputError(f"{where}: spec must be a mapping")
    return {"name": name, "spec": dict(spec)}


def read_documents(path: str) -> list[tuple[str, Any]]:
    """The YAML documents of a file (`-`: standard input), each with where it came from."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if not docs:
        raise InputError(f"{path} holds no document")
    return [(f"{path} document {i + 1}", doc) for i, doc in enumerate(docs)]


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="YAML file of Agents ('-': standard input)")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Create each agent of the file, or update the one of the same name."""
    bodies = [agent_body(doc, where) for where, doc in read_documents(file)]
    session = session_of(ctx)
    if session.cluster_mode:
        cluster = session.cluster()
        applied = [cluster.apply_agent(body)["metadata"] for body in bodies]
        results = [{"id": m["name"], "name": m["name"], "action": "applied"} for m in applied]
        emit({"items": results}, output, RESULT, rows_of="items")
        return
    api = session.api()
    existing = {a["name"]: a["id"] for a in api.pages("/api/agents", {"limit": 100})}
    results = []
    for body in bodies:
        if body["name"] in existing:
            saved = api.put(f"/api/agents/{segment(existing[body['name']])}", body)
            results.append({"id": saved["id"], "name": saved["name"], "action": "updated"})
        else:
            saved = api.post("/api/agents", body)
            existing[saved["name"]] = saved["id"]
            results.append({"id": saved["id"], "name": saved["name"], "action": "created"})
    emit({"items": results}, output, RESULT, rows_of="items")


MEMORY_COLUMNS = (
    Column("KEY", field("key")),
    Column("VALUE", field("value")),
    Column("UPDATED", field("updatedAt")),
    Column("BY", field("updatedBy")),
)


@app.command("memory")
def memory(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="agent id or name")],
    delete: Annotated[list[str] | None, typer.Option("--delete", help="forget this key (repeatable)")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """The agent's memory across runs (spec.memory): its entries, or --delete KEY to forget some."""
    session = session_of(ctx)
    session.needs_api("agents memory")
    api = session.api()
    base = f"/api/agents/{segment(resolve_agent(api, agent))}/memory"
    for key in delete or []:
        api.call("DELETE", f"{base}/{segment(key)}")
        print(f"forgot {key}", file=sys.stderr)
    if not delete:
        emit(api.get(base), output, MEMORY_COLUMNS, rows_of="entries")
