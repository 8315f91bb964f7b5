"""Helpers for the workspace integration tier: the runtime as a real process, a small web server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fixtures.helpers import patient

ANTHROPIC_KEY = "sk-ant-integration-0123456789abcdef"
OPENAI_KEY = "sk-openai-integration-0123456789abcdef"
MODEL = "claude-sonnet-4-6"


def base_spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "instructions": "You are an integration-test agent.",
        "model": {"provider": "anthropic", "name": MODEL},
        "tools": ["shell", "python", "files", "http"],
    }
    spec.update(extra)
    return spec


def prepare(
    root: Path,
    spec: dict[str, Any],
    *,
    llm_url: str,
    input_text: str = "Do the task.",
    execution: str = "ex-int-1",
    env: dict[str, str] | None = None,
) -> dict[str, str]:
    """Lay out the operator's mounts under root and return the pod's environment."""
    config_dir = root / "etc-agentry"
    config_dir.mkdir(parents=True, exist_ok=True)
    agent = {"metadata": {"name": "it-agent", "namespace": "team-it"}, "spec": spec}
    (config_dir / "agent.json").write_text(json.dumps(agent))
    (config_dir / "input.txt").write_text(input_text)
    (root / "workspace").mkdir(exist_ok=True)
    pod_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "AGENTRY_CONFIG_DIR": str(config_dir),
        "AGENTRY_WORKSPACE": str(root / "workspace"),
        "AGENTRY_RESULT_FILE": str(root / "termination-log"),
        "AGENTRY_EXECUTION": execution,
        "AGENTRY_CORRELATION_ID": f"corr-{execution}",
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": llm_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{llm_url}/v1",
        "AGENTRY_RETRY_INITIAL_SECONDS": "0.01",
        "AGENTRY_RETRY_MAX_SECONDS": "0.05",
    }
    pod_env.update(env or {})
    return pod_env


@dataclass
class PodRun:
    code: int
    stdout: str
    stderr: str
    result_text: str
    root: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def result(self) -> dict[str, Any]:
        return dict(json.loads(self.result_text))

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def explain(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"


def run_pod(root: Path, env: dict[str, str], timeout: float = 60) -> PodRun:
    """`python -m agentry_workspace`, as the Job's container runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "agentry_workspace"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=patient(timeout),
        stdin=subprocess.DEVNULL,
    )
    result_path = Path(env["AGENTRY_RESULT_FILE"])
    run = PodRun(
        code=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        result_text=result_path.read_text() if result_path.exists() else "",
        root=root,
    )
    for line in proc.stdout.splitlines():
        # Every stdout line must be one JSON event: that is the contract with `kubectl logs`.
        run.events.append(json.loads(line))
    return run


@dataclass
class Hit:
    method: str
    path: str
    body: bytes


class Web:
    """A stand-in for the internet: fixed pages, every request recorded."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, str]] = {}
        self.hits: list[Hit] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                web.hits.append(Hit(self.command, self.path, body))
                status, text = web.pages.get(self.path, (404, "not found"))
                data = text.encode()
                self.send_response(status)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@contextmanager
def web_server() -> Iterator[Web]:
    web = Web()
    thread = threading.Thread(target=web.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield web
    finally:
        web.server.shutdown()
        web.server.server_close()
