"""A gateway process SIGKILLed while a run's model call is in flight (issue 16, faults), on Google's
Firestore emulator, with the real runtime process as the client.

Two gateway processes stand behind one address, as two pods behind the Service. The one serving the
call is killed mid-call: the runtime's retry reaches the other and the run succeeds with the usage
of the call that answered. The killed pod's reservation is not left held: once its heartbeat is
silent, the survivor's next transaction counts it at its estimate, and the ledger shows no
reservation left and every call counted once.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import firestore

from agentry_common.governance import Scope
from agentry_common.records import Collection
from agentry_gateway.budgets.counters import counter_id
from agentry_localcluster import localhttp
from agentry_localcluster.procs import Proc, start_with_ports
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import eventually
from tests.integration.api.server import TcpProxy
from tests.integration.workspace.harness import PodRun, base_spec, prepare, run_pod

from .harness import KEYRING, metric, run_token

pytestmark = pytest.mark.integration

GONE_SECONDS = 3  # AGENTRY_GATEWAY_POD_GONE_SECONDS: 60 in production
BUDGETS = [{"name": "agents", "scope": "agent", "limits": [{"window": "day", "messages": 100}]}]
USAGE = {"input_tokens": 300, "output_tokens": 20}
AGENT = counter_id(Scope.AGENT, "team-it/it-agent")


class GatewayProcess:
    """`python -m agentry_gateway` on a quiet port of its own, with the Firestore ledger."""

    def __init__(self, name: str, workdir: Path, config_file: Path, project: str) -> None:
        self.name, self.workdir, self.config_file, self.project = name, workdir, config_file, project
        self.port = 0
        self.proc: Proc | None = None

    def launch(self) -> GatewayProcess:
        return start_with_ports(f"gateway {self.name}", 1, self._launch_on, host="127.0.0.1")

    def _launch_on(self, ports: tuple[int, ...]) -> GatewayProcess:
        (self.port,) = ports
        kid = KEYRING.current
        env = {
            "AGENTRY_GATEWAY_CONFIG_FILE": str(self.config_file),
            "AGENTRY_GATEWAY_LEDGER": "firestore",
            "AGENTRY_GATEWAY_BUDGET_LEASES": "false",  # a transaction per call: the reservation to find
            "AGENTRY_GATEWAY_POD_GONE_SECONDS": str(GONE_SECONDS),
            "AGENTRY_GATEWAY_SETTLE_DELAY_SECONDS": "0.05",
            "AGENTRY_GATEWAY_HOST": "127.0.0.1",
            "AGENTRY_GATEWAY_PORT": str(self.port),
            "AGENTRY_TOKEN_KEYS": f"{kid}:{KEYRING.keys[kid].decode()}",
            "AGENTRY_TOKEN_KID": kid,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }
        argv = [sys.executable, "-m", "agentry_gateway"]
        self.proc = Proc(f"gateway-{self.name}", argv, self.workdir / f"gateway-{self.name}.log", env=env)
        self.proc.start().wait_ready(
            lambda: localhttp.get(f"{self.url}/readyz", timeout=1).is_success, 60, "ready", ports=ports
        )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metric(self, name: str) -> float:
        return metric(self.url, name)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.popen is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.popen.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def counters(project: str) -> dict[str, dict[str, Any]]:
    db = firestore.Client(project=project)
    try:
        return {d.id: d.to_dict() or {} for d in db.collection(Collection.BUDGET_COUNTERS).stream()}
    finally:
        db.close()  # type: ignore[no-untyped-call]


def a_run(root: Path, url: str, execution: str) -> PodRun:
    """The runtime as the Job runs it, through the gateway's address, retrying a dropped call."""
    token = run_token(execution, agent="it-agent", namespace="team-it")
    env = prepare(
        root,
        base_spec(model={"provider": "anthropic", "name": "claude-sonnet-4-6"}),
        llm_url=url,
        execution=execution,
        env={
            "ANTHROPIC_API_KEY": token,
            "OPENAI_API_KEY": token,
            "AGENTRY_RETRY_ATTEMPTS": "4",
            "AGENTRY_RETRY_INITIAL_SECONDS": "0.5",
            "AGENTRY_RETRY_MAX_SECONDS": "2",
        },
    )
    return run_pod(root, env, timeout=120)


def test_a_gateway_killed_mid_call_loses_no_run_and_leaks_no_reservation(
    tmp_path: Path, firestore_project: str, llm: ScriptedLLM
) -> None:
    llm.script(
        [
            {"text": "never delivered: its gateway dies first", "delay": 30, "usage": USAGE},
            {"text": "done", "usage": USAGE},
            {"text": "done again", "usage": USAGE},
        ]
    )
    config_file = tmp_path / "gateway.yaml"
    channel = {
        "name": "anthropic",
        "protocol": "anthropic",
        "baseURL": llm.url,
        "apiKeyEnv": "GW_TEST_ANTHROPIC",
    }
    config_file.write_text(yaml.safe_dump({"channels": [channel], "budgets": BUDGETS}))
    first = GatewayProcess("a", tmp_path, config_file, firestore_project).launch()
    second = GatewayProcess("b", tmp_path, config_file, firestore_project).launch()
    service = TcpProxy("127.0.0.1", first.port)  # the Service: new connections go to a live pod
    service.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(a_run, tmp_path / "run-1", f"http://127.0.0.1:{service.port}", "ex-kill-1")
            eventually(lambda: len(llm.requests) == 1, 60, "the call to reach the provider through a")
            held = counters(firestore_project)[AGENT]["reservations"]
            assert len(held) == 1, held  # a's reservation of the call in flight
            service.target = ("127.0.0.1", second.port)
            first.kill()
            run = running.result(timeout=180)
        assert run.code == 0, run.explain()
        assert run.result["stopReason"] == "end_turn" and run.result["retries"] >= 1, run.result
        assert run.result["usage"]["inputTokens"] == USAGE["input_tokens"]  # the call that answered

        # a's heartbeat goes silent; b counts a's reservation in its next transaction (the next call).
        eventually(lambda: second.metric("agentry_gateway_pods_gone") >= 1, 60, "b to see a gone")
        again = a_run(tmp_path / "run-2", f"http://127.0.0.1:{service.port}", "ex-kill-2")
        assert again.code == 0, again.explain()
        eventually(
            lambda: second.metric("agentry_gateway_ledger_expired_reservations") >= 1, 30, "a's call counted"
        )
    finally:
        service.close()
        second.stop()
        first.stop()
    agent = counters(firestore_project)[AGENT]
    assert agent["reservations"] == {}, agent["reservations"]  # nothing held, nothing leaked
    # Three calls counted once each: a's at its estimate (the provider may have charged it), b's two
    # at their actual usage.
    assert agent["total"][1] == 3, agent["total"]
    assert len(llm.requests) == 3
