"""The workspace image, run as Kubernetes runs it: read-only root, non-root, writable /workspace
and /tmp only, against the scripted LLM on the host.

The image is the one `make test` builds before the tiers (hack/build-images.sh, cached by the hash of
its inputs: here only a check, unless its sources changed since). An image that cannot be built fails
the tests with the build log, never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.workspace.harness import ANTHROPIC_KEY, base_spec

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "hack" / "build-images.sh"


@dataclass
class Image:
    tag: str
    env: dict[str, str]  # DOCKER_HOST for the docker CLI


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    proc = subprocess.run(["bash", str(BUILD), "workspace"], capture_output=True, text=True, timeout=1500)
    if proc.returncode != 0:
        pytest.fail(
            f"building the workspace image failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    said = {k: v for k, _, v in (line.partition("=") for line in proc.stdout.splitlines())}
    env = dict(os.environ)
    if said.get("DOCKER_HOST"):
        env["DOCKER_HOST"] = said["DOCKER_HOST"]
    yield Image(tag=said["IMAGE_WORKSPACE"], env=env)


@dataclass
class ContainerRun:
    code: int
    stdout: str
    stderr: str
    result: dict[str, Any]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def run_container(image: Image, root: Path, spec: dict[str, Any], env: dict[str, str]) -> ContainerRun:
    config = root / "config"
    out = root / "out"
    config.mkdir(parents=True)
    out.mkdir()
    out.chmod(0o777)  # written by uid 10001
    (config / "agent.json").write_text(json.dumps({"metadata": {"name": "img"}, "spec": spec}))
    (config / "input.txt").write_text("Compute the mean of 2, 4 and 9 with pandas and save it.")
    name = f"agentry-test-{uuid.uuid4().hex[:10]}"
    argv = [
        "docker", "run", "--rm", "--pull=never", "--name", name,
        "--read-only", "--user", "10001", "--network=host",
        "--tmpfs", "/workspace", "--tmpfs", "/tmp",
        "-v", f"{config}:/etc/agentry:ro", "-v", f"{out}:/out",
        "-e", "AGENTRY_RESULT_FILE=/out/termination-log",
        "-e", "AGENTRY_EXECUTION=ex-image", "-e", "AGENTRY_CORRELATION_ID=corr-image",
    ]  # fmt: skip
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    try:
        proc = subprocess.run([*argv, image.tag], capture_output=True, text=True, timeout=300, env=image.env)
    except subprocess.TimeoutExpired as exc:
        # The container outlives a killed `docker run`: remove it, and show where the run stood.
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, env=image.env, check=False)
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"the container did not finish in 300 s; its last output:\n{out[-4000:]}", pytrace=False)
    result_file = out / "termination-log"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return ContainerRun(proc.returncode, proc.stdout, proc.stderr, result)


# The shell call: read the result file, try the read-only root, then go for the runtime's secrets.
SHELL_PROBE = "cat mean.txt; touch /etc/x; cat /proc/$PPID/environ; echo FORGED-$((6*7)) >> /proc/$PPID/fd/1"


def test_image_runs_an_agent_to_a_result(image: Image, tmp_path: Path) -> None:
    code = (
        "import pandas as pd\n"
        "m = pd.Series([2, 4, 9]).mean()\n"
        "open('mean.txt', 'w').write(str(m))\n"
        "print('mean', m)"
    )
    with ScriptedLLM() as llm:
        llm.script(
            [
                {"tool_use": {"name": "python", "input": {"code": code}}},
                {"tool_use": {"name": "shell", "input": {"command": SHELL_PROBE}}},
                {"text": "The mean is 5.0.", "usage": {"input_tokens": 900, "output_tokens": 100}},
            ]
        )
        run = run_container(
            image,
            tmp_path,
            base_spec(),
            {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": llm.url},
        )
        requests = [r.body for r in llm.requests]

    explain = f"exit {run.code}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert run.code == 0, explain
    assert run.result["stopReason"] == "end_turn" and run.result["summary"] == "The mean is 5.0."
    assert run.result["usage"]["turns"] == 3
    events = run.events()
    assert events[0]["type"] == "start" and events[-1]["type"] == "result"
    assert all(e["correlationId"] == "corr-image" for e in events)
    python_result = requests[1]["messages"][-1]["content"][0]["content"]
    assert python_result.startswith("exit code 0\nmean 5.0"), python_result
    shell_result = requests[2]["messages"][-1]["content"][0]["content"]
    assert "5.0" in shell_result and "Read-only file system" in shell_result  # root fs is read-only
    # A tool runs as the runtime's UID, but the runtime is not dumpable: its environment (the key)
    # and memory are not readable from /proc (workspace_image/agentry_workspace/hardening.py).
    assert "environ: Permission denied" in shell_result, shell_result
    assert "fd/1: Permission denied" in shell_result and "FORGED-42" not in run.stdout  # no forged events
    assert ANTHROPIC_KEY not in shell_result and "sk-ant" not in shell_result
    assert ANTHROPIC_KEY not in run.stdout + run.stderr


def test_image_reports_a_missing_key_as_a_config_error(image: Image, tmp_path: Path) -> None:
    run = run_container(image, tmp_path, base_spec(), {})
    assert run.code == 2, run.stderr
    assert run.result["stopReason"] == "config_error"
    assert "ANTHROPIC_API_KEY" in run.result["summary"]
    assert "Traceback" not in run.stderr
