"""MCP servers as tools: the runtime as a real process against the reference MCP server
(@modelcontextprotocol/server-everything, pinned by workspace_image/mcp-servers/package-lock.json),
over stdio (started by the runtime, as in the image) and over streamable HTTP (a server of its own)."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentry_localcluster.mcpservers import mcp_servers_bin
from agentry_localcluster.procs import Proc, start_with_ports
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import ANTHROPIC_KEY, PodRun, base_spec, prepare, run_pod

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
SERVERS = REPO / "workspace_image" / "mcp-servers"
TOKEN = "mcp-test-token-0123456789"


@pytest.fixture(scope="module")
def everything_bin() -> Path:
    """node_modules/.bin of the pinned MCP servers, installed by the one-time builds (`make prepare`)."""
    bin_dir = mcp_servers_bin()
    assert (bin_dir / "mcp-server-everything").exists(), f"not installed: run `make prepare` ({bin_dir})"
    return bin_dir


def _serve(bin_dir: Path, transport: str, log: Path, path: str) -> Iterator[str]:
    """server-everything over a network transport on a quiet port, owned by its process group."""

    def launch(ports: tuple[int, ...]) -> Proc:
        proc = Proc(
            f"server-everything ({transport})",
            [str(bin_dir / "mcp-server-everything"), transport],
            log,
            env={"PORT": str(ports[0])},
        ).start()
        proc.wait_ready(lambda: _answers(ports[0]), timeout=60, what="serving", ports=ports)
        return proc

    proc = start_with_ports(f"server-everything ({transport})", 1, launch, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{(proc.env or {})['PORT']}{path}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def everything_http(everything_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("everything-http") / "server.log"
    yield from _serve(everything_bin, "streamableHttp", log, "/mcp")


@pytest.fixture(scope="module")
def everything_sse(everything_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("everything-sse") / "server.log"
    yield from _serve(everything_bin, "sse", log, "/sse")


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/agentry-probe", timeout=1)
    except urllib.error.HTTPError:
        return True  # express answers 404: the server is up
    return True


def _use(tool: str, args: dict[str, Any], tid: str) -> dict[str, Any]:
    return {
        "tool_use": {"name": tool, "input": args, "id": tid},
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def _tool_results(body: dict[str, Any]) -> dict[str, str]:
    """tool_use_id -> the text the model was given, from one request to the model."""
    out: dict[str, str] = {}
    for block in body["messages"][-1]["content"]:
        if block.get("type") == "tool_result":
            content = block["content"]
            out[block["tool_use_id"]] = content if isinstance(content, str) else json.dumps(content)
    return out


def _run(
    tmp_path: Path, spec: dict[str, Any], script: list[dict[str, Any]], bin_dir: Path
) -> tuple[PodRun, list[Any]]:
    with ScriptedLLM(script) as llm:
        env = prepare(tmp_path, spec, llm_url=llm.url, env={"MCP_TOKEN": TOKEN})
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
        run = run_pod(tmp_path, env, timeout=120)
        return run, [r.body for r in llm.requests]


def test_stdio_server_tools_are_offered_called_and_sandboxed(tmp_path: Path, everything_bin: Path) -> None:
    server = {
        "name": "everything",
        "command": ["mcp-server-everything", "stdio"],
        "env": [
            {"name": "GREETING", "value": "hi"},
            {"name": "AUTH", "secretEnv": "MCP_TOKEN", "prefix": "t:"},
        ],
        "tools": ["echo", "get-sum", "get-env", "gzip-*"],
        "risk": {"get-sum": "YELLOW"},
    }
    spec = base_spec(
        tools=["files"],
        secrets=[{"env": "MCP_TOKEN", "secretKeyRef": {"name": "mcp", "key": "token"}}],
        # A server that cannot start is reported; the run goes on with the others.
        mcpServers=[server, {"name": "missing", "command": ["no-such-mcp-server"], "tools": ["*"]}],
    )
    script = [
        {
            "content": [
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "mcp__everything__echo",
                    "input": {"message": "hello agentry"},
                },
                {
                    "type": "tool_use",
                    "id": "t2",
                    "name": "mcp__everything__get-sum",
                    "input": {"a": 2, "b": 40},
                },
                {"type": "tool_use", "id": "t3", "name": "mcp__everything__get-env", "input": {}},
                {"type": "tool_use", "id": "t4", "name": "mcp__everything__get-tiny-image", "input": {}},
            ],
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
        {"text": "All done.", "usage": {"input_tokens": 10, "output_tokens": 5}},
    ]
    run, bodies = _run(tmp_path, spec, script, everything_bin)
    assert run.code == 0, run.explain()

    # Offered with the server's schemas: the allow-list admits four (gzip-* by pattern), not the rest.
    offered = {t["name"]: t for t in bodies[0]["tools"]}
    mcp_names = sorted(n for n in offered if n.startswith("mcp__"))
    assert mcp_names == [
        "mcp__everything__echo",
        "mcp__everything__get-env",
        "mcp__everything__get-sum",
        "mcp__everything__gzip-file-as-resource",
    ]
    assert offered["mcp__everything__echo"]["input_schema"]["properties"]["message"]["type"] == "string"

    results = _tool_results(bodies[1])
    assert "Echo: hello agentry" in results["t1"]
    assert "42" in results["t2"]
    # The server's environment: the variables it was given (the secret with its prefix), and no
    # provider key; the tool outside the allow-list was refused, never sent to the server.
    assert "t:" + TOKEN in results["t3"] and "GREETING" in results["t3"], results["t3"]
    assert ANTHROPIC_KEY not in results["t3"] and "ANTHROPIC" not in results["t3"]
    assert "not enabled" in results["t4"]

    # Risks from the annotations (read-only GREEN, neither YELLOW) and the override; reported.
    report, missing = run.result["mcp"]
    assert missing["name"] == "missing" and "no-such-mcp-server" in missing["error"], missing
    assert [report] == [
        {
            "name": "everything",
            "tools": {
                "echo": "GREEN",
                "get-env": "GREEN",
                "get-sum": "YELLOW",
                "gzip-file-as-resource": "YELLOW",
            },
        }
    ]
    calls = {e["toolUseId"]: e for e in run.of("tool_call")}
    assert calls["t1"]["risk"] == "GREEN" and calls["t2"]["risk"] == "YELLOW"
    assert run.of("mcp_servers")[0]["servers"] == [report, missing]
    assert TOKEN not in run.stdout  # a secret given to a server is not echoed into the run's events


def test_streamable_http_server_under_the_network_rules(
    tmp_path: Path, everything_bin: Path, everything_http: str
) -> None:
    host = everything_http.split("/")[2]
    server = {
        "name": "remote",
        "url": everything_http,
        "headers": [{"name": "Authorization", "secretEnv": "MCP_TOKEN", "prefix": "Bearer "}],
        "tools": ["echo"],
        "risk": {"echo": "RED"},
    }
    spec = base_spec(
        tools=["shell"],
        http={"allowedHosts": [f"http://{host}"]},
        secrets=[{"env": "MCP_TOKEN", "secretKeyRef": {"name": "mcp", "key": "token"}}],
        mcpServers=[server],
    )
    script = [
        _use("mcp__remote__echo", {"message": "over http"}, "r1"),
    ]
    run, bodies = _run(tmp_path / "a", spec, script, everything_bin)
    # RED by the override: the call waits for a human, like any RED action.
    assert run.code == 30, run.explain()
    assert run.result["approval"]["tool"] == "mcp__remote__echo"
    assert run.result["mcp"] == [{"name": "remote", "tools": {"echo": "RED"}}]

    # Approved, the resumed run reconnects and the call goes to the server.
    decision = {"approvalId": run.result["approval"]["id"], "approved": True, "decidedBy": "alice"}
    root = tmp_path / "a"
    (root / "etc-agentry" / "resume.json").write_text(json.dumps({"decision": decision}))
    resumed, bodies = _run(root, spec, [{"text": "echoed"}], everything_bin)
    assert resumed.code == 0, resumed.explain()
    assert "Echo: over http" in _tool_results(bodies[0])["r1"]

    # Shell is RED too while the agent has a secret and a remote server (code could send them out).
    shell_call = [_use("shell", {"command": "echo hi"}, "s1")]
    paused, _ = _run(tmp_path / "b", spec, shell_call, everything_bin)
    assert paused.code == 30 and paused.result["approval"]["tool"] == "shell", paused.explain()
    assert "trustCodeWithAccess" in paused.result["approval"]["reason"]

    # Not in http.allowedHosts: never connected; reported, and the run goes on without its tools.
    closed = base_spec(
        tools=["files"], mcpServers=[{"name": "remote", "url": everything_http, "tools": ["*"]}]
    )
    refused, bodies = _run(tmp_path / "c", closed, [{"text": "no tools"}], everything_bin)
    assert refused.code == 0, refused.explain()
    (entry,) = refused.result["mcp"]
    assert "allowedHosts" in entry["error"] and "tools" not in entry, entry
    assert not [t for t in bodies[0]["tools"] if t["name"].startswith("mcp__")]


def test_sse_server(tmp_path: Path, everything_bin: Path, everything_sse: str) -> None:
    host = everything_sse.split("/")[2]
    server = {"name": "old", "url": everything_sse, "transport": "SSE", "tools": ["get-sum"]}
    spec = base_spec(tools=["files"], http={"allowedHosts": [f"http://{host}"]}, mcpServers=[server])
    script = [_use("mcp__old__get-sum", {"a": 1, "b": 2}, "s1"), {"text": "three"}]
    run, bodies = _run(tmp_path, spec, script, everything_bin)
    assert run.code == 0, run.explain()
    assert "The sum of 1 and 2 is 3" in _tool_results(bodies[1])["s1"]
    assert run.result["mcp"] == [{"name": "old", "tools": {"get-sum": "GREEN"}}]
