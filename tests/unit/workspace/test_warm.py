"""The runtime's warm mode (agentry_workspace/warm.py): one claim, sealed with the pod's key, then the
run goes on as a cold start would; and the claim channel's sealing (agentry_common/pool.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentry_common import constants as c
from agentry_common import pool as p
from agentry_testing.scripted_llm import ScriptedLLM
from agentry_workspace.warm import Mailbox, run_env

pytestmark = pytest.mark.unit

KEY = p.new_key()


def claim(uid: str = "e-uid", **files: str) -> p.ClaimRequest:
    return p.ClaimRequest(
        claim=uid, execution="run-1", env={"ANTHROPIC_API_KEY": "tok"}, files=files or {c.INPUT_FILE: "hi"}
    )


def test_sealing_is_authenticated_and_directional() -> None:
    blob = p.seal_request(KEY, claim())
    assert p.open_request(KEY, blob) == claim()
    with pytest.raises(p.SealError):
        p.open_request(p.new_key(), blob)  # another pod's key
    with pytest.raises(p.SealError):
        p.open_request(KEY, blob[:-1] + bytes([blob[-1] ^ 1]))  # altered
    answer = p.seal_answer(KEY, p.ClaimAnswer(claim="e-uid", accepted=True))
    with pytest.raises(p.SealError):
        p.open_request(KEY, answer)  # an answer is no request
    assert b"tok" not in blob


def test_a_pod_serves_one_claim_and_acknowledges_its_repeat() -> None:
    box = Mailbox(KEY)
    assert box.offer(b"x" * 40)[0] == 403
    assert box.offer(p.seal_request(p.new_key(), claim()))[0] == 403
    assert not box.arrived.is_set()
    status, body = box.offer(p.seal_request(KEY, claim()))
    assert status == 200 and p.open_answer(KEY, body) == p.ClaimAnswer(claim="e-uid", accepted=True)
    assert box.arrived.is_set() and box.claim == claim()
    status, body = box.offer(p.seal_request(KEY, claim()))
    assert status == 200 and p.open_answer(KEY, body).repeat
    status, body = box.offer(p.seal_request(KEY, claim("other-uid")))
    assert status == 409 and not p.open_answer(KEY, body).accepted
    assert box.claim == claim()  # the first stays the pod's run


def test_unknown_input_files_are_refused() -> None:
    box = Mailbox(KEY)
    assert box.offer(p.seal_request(KEY, claim(**{"../etc/passwd": "x"})))[0] == 400
    assert not box.arrived.is_set()


def test_the_runs_env_drops_the_warm_pods_own() -> None:
    base = {"PATH": "/bin", p.ENV_CLAIM_PORT: "1", p.ENV_CLAIM_KEY_FILE: "/k"}
    assert run_env(claim(), base) == {"PATH": "/bin", "ANTHROPIC_API_KEY": "tok"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.post(url, content=body, timeout=5, trust_env=False)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_warm_process_runs_the_claimed_run(tmp_path: Path) -> None:
    key_file, config, workspace, result = (tmp_path / n for n in ("key", "config", "ws", "result"))
    key_file.write_text(KEY)
    config.mkdir()
    workspace.mkdir()
    port = _free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workspace),
        p.ENV_CLAIM_PORT: str(port),
        p.ENV_CLAIM_KEY_FILE: str(key_file),
        "AGENTRY_CONFIG_DIR": str(config),
        "AGENTRY_WORKSPACE": str(workspace),
        "AGENTRY_RESULT_FILE": str(result),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentry_workspace", p.WARM_FLAG], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        with ScriptedLLM([{"text": "hello from a warm pod"}]) as llm:
            agent = {
                "metadata": {"name": "hello", "namespace": "w"},
                "spec": {"instructions": "Say hi.", "model": {"name": "claude-x", "baseURL": llm.url}},
            }
            request = p.ClaimRequest(
                claim="e-uid",
                execution="run-1",
                env={"ANTHROPIC_API_KEY": "run-token", c.ENV_EXECUTION: "run-1", c.ENV_DEADLINE: "60"},
                files={c.AGENT_FILE: json.dumps(agent), c.INPUT_FILE: "hi"},
            )
            url = f"http://127.0.0.1:{port}{p.CLAIM_PATH}"
            answer = _post(url, p.seal_request(KEY, request))
            assert answer.status_code == 200 and p.open_answer(KEY, answer.content).accepted
            code = proc.wait(timeout=60)
            assert code == 0, proc.stderr.read() if proc.stderr else ""
            (seen,) = llm.requests
            assert seen.headers["x-api-key"] == "run-token"
        report = json.loads(result.read_text())
        assert "hello from a warm pod" in json.dumps(report)
        assert (config / c.INPUT_FILE).read_text() == "hi"
    finally:
        proc.kill()
        proc.wait()
