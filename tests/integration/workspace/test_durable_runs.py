"""The runtime process keeping its journal at a real gateway (memory ledger): SIGTERM mid-run stops it
at a checkpoint (exit 75), a second process resumes the same run and finishes it, every tool effect
happening once; a follow-up process starts from the parent's conversation."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentry_common.checkpoints import CHECKPOINT_PATH, derive_state_key
from agentry_common.tokens import mint_run_token
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient
from tests.integration.gateway.harness import ANTHROPIC_KEY, KEYRING, GatewayServer, config, settings

from .harness import PodRun, base_spec, prepare, run_pod

pytestmark = pytest.mark.integration

NAMESPACE, AGENT = "team-it", "it-agent"


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLM]:
    monkeypatch.setenv("GW_TEST_ANTHROPIC", ANTHROPIC_KEY)
    monkeypatch.setenv("GW_TEST_OPENAI", ANTHROPIC_KEY)
    with ScriptedLLM() as server:
        yield server


def _token(execution: str, uid: str, parent: str = "", parent_uid: str = "") -> str:
    return mint_run_token(
        KEYRING,
        namespace=NAMESPACE,
        execution=execution,
        agent=AGENT,
        execution_uid=uid,
        user="user-1",
        priority=5,
        active_deadline_seconds=600,
        parent=parent,
        parent_uid=parent_uid,
    )


def _pod_env(root: Path, gw: GatewayServer, execution: str, uid: str, **extra: str) -> dict[str, str]:
    token = _token(execution, uid, extra.pop("parent", ""), extra.pop("parent_uid", ""))
    env = {
        "ANTHROPIC_API_KEY": token,
        "OPENAI_API_KEY": token,
        "AGENTRY_STATE_KEY": derive_state_key(KEYRING.keys[KEYRING.current], NAMESPACE, uid),
        "AGENTRY_CHECKPOINT_URL": gw.url,
        **extra,
    }
    return prepare(root, base_spec(tools=["shell"]), llm_url=gw.url, execution=execution, env=env)


def _journal(gw: GatewayServer, token: str) -> dict[str, Any]:
    response = httpx.get(gw.url + CHECKPOINT_PATH, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _terminated(root: Path, env: dict[str, str], marker: Path) -> PodRun:
    """Start the runtime, SIGTERM it once `marker` exists (its tool is running), wait for it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentry_workspace"],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + patient(60)
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=patient(60))
    result = Path(env["AGENTRY_RESULT_FILE"])
    run = PodRun(proc.returncode, stdout, stderr, result.read_text() if result.exists() else "", root)
    run.events = [json.loads(line) for line in stdout.splitlines()]
    return run


def test_sigterm_mid_run_then_a_new_process_resumes_with_every_effect_once(
    tmp_path: Path, llm: ScriptedLLM
) -> None:
    effects = tmp_path / "workspace" / "effects.txt"
    marker = tmp_path / "workspace" / "started"
    llm.script(
        [
            {
                "tool_use": {
                    "name": "shell",
                    "input": {"command": "echo a >> effects.txt; touch started; sleep 1"},
                }
            },
            {"tool_use": {"name": "shell", "input": {"command": "echo b >> effects.txt"}}},
            {"text": "all done"},
        ]
    )
    with GatewayServer(settings(), config(llm)) as gw:
        env = _pod_env(tmp_path, gw, "ex-dur", "uid-dur")
        first = _terminated(tmp_path, env, marker)
        assert first.code == 75, first.explain()
        assert first.result["stopReason"] == "interrupted"
        assert first.result["checkpoint"]["entries"] >= 4
        second = run_pod(tmp_path, env)
        journal = _journal(gw, env["ANTHROPIC_API_KEY"])
    assert second.code == 0, second.explain()
    assert effects.read_text() == "a\nb\n"  # the first call finished in its grace: never run again
    assert second.result["summary"] == "all done"
    assert second.result["usage"]["turns"] == 3  # the lost pod's answer counted once
    assert second.result["checkpoint"]["resumes"] == 1
    resumed = second.of("resumed")
    assert len(resumed) == 1 and resumed[0]["interruptedCalls"] == 0 and resumed[0]["doneCalls"] == 0
    assert len(llm.requests) == 3
    kinds = [e["kind"] for e in journal["entries"]]
    assert kinds.count("begin") == 2 and kinds.count("tool_result") == 2 and kinds[-1] == "message"
    assert second.result["checkpoint"]["entries"] == len(kinds)


def test_a_follow_up_starts_from_its_parents_conversation(tmp_path: Path, llm: ScriptedLLM) -> None:
    llm.script([{"text": "Monday is booked"}, {"text": "Friday is booked too"}])
    with GatewayServer(settings(), config(llm)) as gw:
        parent_env = _pod_env(tmp_path / "p", gw, "ex-parent", "uid-parent")
        assert run_pod(tmp_path / "p", parent_env).code == 0
        parent_key = parent_env["AGENTRY_STATE_KEY"]
        child_env = _pod_env(
            tmp_path / "c",
            gw,
            "ex-child",
            "uid-child",
            parent="ex-parent",
            parent_uid="uid-parent",
            AGENTRY_PARENT_EXECUTION="ex-parent",
            AGENTRY_PARENT_STATE_KEYS=json.dumps(["0" * 64, parent_key]),
        )
        (tmp_path / "c" / "etc-agentry" / "input.txt").write_text("Now Friday")
        child = run_pod(tmp_path / "c", child_env)
        forged_env = {**child_env, "AGENTRY_PARENT_STATE_KEYS": json.dumps(["0" * 64])}
        refused = run_pod(tmp_path / "c", {**forged_env, "AGENTRY_EXECUTION": "ex-child"})
    assert child.code == 0, child.explain()
    assert child.result["summary"] == "Friday is booked too"
    assert child.result["usage"]["turns"] == 1  # its own budget: the parent's turn is not counted
    sent = llm.requests[1].body["messages"]
    texts = json.dumps(sent)
    assert "Monday is booked" in texts and "Now Friday" in texts and len(sent) == 3
    assert refused.code == 2 and "does not verify" in refused.result["summary"]
