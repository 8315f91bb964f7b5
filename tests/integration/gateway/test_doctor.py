"""`agentry doctor` against a live gateway, Firestore emulator, a dead operator URL and an
unreachable cluster: a green/red table with latencies and a fix per red line, exit 1 on any red."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentry_cli import doctor
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.procs import refused_port
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import KEYRING, GatewayServer, config, settings

pytestmark = pytest.mark.integration

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:%d"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def test_doctor_table_green_and_red(
    tmp_path: Path,
    firestore_emulator: FirestoreEmulator,
    firestore_project: str,
    llm: ScriptedLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    llm.script([{"text": "p", "usage": {"input_tokens": 8, "output_tokens": 1}}, {"error": {"status": 401}}])
    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setenv("AGENTRY_TOKEN_KEYS", f"test:{KEYRING.keys['test'].decode()}")
    monkeypatch.setenv("AGENTRY_TOKEN_KID", "test")
    # Ports held (bound, never listening) for the whole test: refused, and nobody else can listen there.
    with (
        refused_port() as no_apiserver,
        refused_port() as no_operator,
        GatewayServer(settings(), config(llm)) as gw,
    ):
        kubeconfig.write_text(KUBECONFIG % no_apiserver)
        common = ["--gateway", gw.url, "--project", firestore_project, "--color", "never"]
        red = doctor.main(
            [
                *common,
                "--kubeconfig",
                str(kubeconfig),
                "--operator-url",
                f"http://127.0.0.1:{no_operator}/healthz",
            ]
        )
        table = capsys.readouterr().out
        llm.script([{"text": "p"}, {"text": "p"}])
        green = doctor.main([*common, "--skip", "kube", "--skip", "operator", "--json"])
        checks = json.loads(capsys.readouterr().out)
    assert red == 1
    lines = table.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "LATENCY", "DETAIL"]

    def row(name: str) -> str:
        [line] = [line for line in lines if line[:1] in ("✔", "✘") and line[2:].startswith(name + " ")]
        return line

    assert row("gateway").startswith("✔") and " ms " in row("gateway")
    assert row("channel anthropic").startswith("✔")  # answered its probe
    assert row("channel openai").startswith("✘") and "HTTP 401" in row("channel openai")
    assert row("firestore").startswith("✔") and firestore_emulator.address in row("firestore")
    assert row("kube-apiserver").startswith("✘") and row("operator").startswith("✘")
    assert "fix: point KUBECONFIG at your cluster" in table
    assert "fix: kubectl -n agentry get pods" in table
    assert "fix: the provider refused the gateway's key for openai" in table
    assert lines[-1] == "3 of 6 red"
    assert green == 0
    assert [c["name"] for c in checks] == ["gateway", "channel anthropic", "channel openai", "firestore"]
    assert all(c["ok"] and c["latency_ms"] is not None for c in checks)
