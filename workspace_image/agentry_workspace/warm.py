"""`python -m agentry_workspace --warm`: a warm pool's pod (docs/runs.md, "Warm pool").

It does every import and set-up that needs no run data, then waits on its claim port for the one claim
it will serve: the run's environment (run token included) and input files, sealed with the key of the
pod's own claim Secret (agentry_common.pool). An unsealed or wrongly sealed request is refused; the
first valid one is the pod's run; the same claim again is acknowledged (the operator may repeat a
delivery after a restart), any other refused. The inputs are written to the config directory and the
run goes on exactly as `python -m agentry_workspace` would (app.pod_main), in this process.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common import pool

from .config import ENV_CONFIG_DIR
from .hardening import forbid_inspection

MAX_CLAIM_BYTES = 4 * 1024 * 1024  # the Agent snapshot and input are bounded by annotation limits
ALLOWED_FILES = frozenset({c.AGENT_FILE, c.INPUT_FILE})


class Mailbox:
    """The one claim this pod serves: the first that opens under its key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.claim: pool.ClaimRequest | None = None
        self.arrived = threading.Event()
        self._lock = threading.Lock()

    def offer(self, blob: bytes) -> tuple[int, bytes]:
        """HTTP status and body for one request (the body sealed when the request was)."""
        try:
            request = pool.open_request(self.key, blob)
        except pool.SealError:
            return 403, b"not sealed with this pod's claim key\n"
        except (ValidationError, ValueError):
            return 400, b"malformed claim\n"
        if set(request.files) - ALLOWED_FILES:
            return 400, b"unknown input file\n"
        with self._lock:
            if self.claim is None:
                self.claim = request
                self.arrived.set()
                answer = pool.ClaimAnswer(claim=request.claim, accepted=True)
            elif self.claim.claim == request.claim:
                answer = pool.ClaimAnswer(claim=request.claim, accepted=True, repeat=True)
            else:
                answer = pool.ClaimAnswer(
                    claim=request.claim, accepted=False, message="claimed by another run"
                )
        return (200 if answer.accepted else 409), pool.seal_answer(self.key, answer)


def handler(mailbox: Mailbox) -> type[BaseHTTPRequestHandler]:
    class Claims(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            if self.path != pool.CLAIM_PATH or not 0 < size <= MAX_CLAIM_BYTES:
                self._send(404 if self.path != pool.CLAIM_PATH else 413, b"")
                return
            self._send(*mailbox.offer(self.rfile.read(size)))

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the run's log is its events; a claim is reported by the operator

    return Claims


def preload() -> None:
    """The imports and set-up of a run that need no run data (the slow part of a cold start)."""
    from agentry_common.heap import freeze_startup_heap
    from agentry_llm import anthropic_provider, openai_provider  # noqa: F401

    from . import app  # noqa: F401

    freeze_startup_heap()  # collected first: a warm pod has the time before its claim


def serve(mailbox: Mailbox, port: int) -> ThreadingHTTPServer:
    """Answer claims on `port` (all addresses) from a daemon thread, for the pod's life: a repeated
    delivery is still acknowledged while the run goes on."""
    server = ThreadingHTTPServer(("", port), handler(mailbox))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="claims", daemon=True).start()
    return server


def write_inputs(request: pool.ClaimRequest, env: Mapping[str, str]) -> None:
    config_dir = Path(env.get(ENV_CONFIG_DIR) or c.WORKSPACE_CONFIG_DIR)
    for name, content in request.files.items():
        (config_dir / name).write_text(content, encoding="utf-8")


def run_env(request: pool.ClaimRequest, base: Mapping[str, str]) -> dict[str, str]:
    """The run's environment: the pod's own (PATH, HOME, ...) without the warm pod's variables, and
    what the claim delivered."""
    env = {k: v for k, v in base.items() if k not in (pool.ENV_CLAIM_PORT, pool.ENV_CLAIM_KEY_FILE)}
    env.update(request.env)
    return env


def warm_main(environ: Mapping[str, str] | None = None) -> int:
    forbid_inspection()  # first: the claim carries the run token
    base = dict(os.environ if environ is None else environ)
    key_file = Path(base.get(pool.ENV_CLAIM_KEY_FILE) or f"{pool.KEY_DIR}/{pool.KEY_FILE}")
    key = key_file.read_text(encoding="utf-8").strip()
    preload()
    mailbox = Mailbox(key)
    serve(mailbox, int(base.get(pool.ENV_CLAIM_PORT) or pool.CLAIM_PORT))
    print("agentry: warm, waiting for a claim", file=sys.stderr, flush=True)
    mailbox.arrived.wait()
    request = mailbox.claim
    assert request is not None
    env = run_env(request, base)
    write_inputs(request, env)
    os.environ.clear()
    os.environ.update(env)  # tools and SDKs that read the process environment see the run's
    from .app import pod_main

    return pod_main(env)


__all__ = ["Mailbox", "run_env", "serve", "warm_main"]
