"""The CLI as a user runs it (the installed `agentry` console script, in a subprocess) against the
real API server of tests/integration/api (Firestore emulator, control plane, operator)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fixtures.helpers import patient
from tests.integration.api.conftest import api, operator_ready  # noqa: F401  (fixtures reused)
from tests.integration.api.server import ApiServer

AGENTRY = Path(sys.executable).parent / "agentry"


@dataclass
class Cli:
    """`agentry` with its own config file (AGENTRY_CONFIG) and a clean environment."""

    config_file: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    spawned: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTRY_")}
        return {**env, "AGENTRY_CONFIG": str(self.config_file), "NO_COLOR": "1", **self.extra_env}

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AGENTRY), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=patient(timeout),
            env=self.env,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(AGENTRY), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )
        self.spawned.append(proc)
        return proc

    @property
    def token(self) -> str:
        return str(yaml.safe_load(self.config_file.read_text())["token"])


@pytest.fixture
def cli(api: ApiServer, tmp_path: Path) -> Iterator[Cli]:  # noqa: F811
    """A new guest user signed in with `agentry login --guest`: the config file holds its token."""
    tool = Cli(tmp_path / "agentry" / "config.yaml")
    done = tool("login", "--url", api.url, "--guest")
    assert done.returncode == 0, done.stderr
    assert "signed in" in done.stderr and "guest" in done.stderr
    assert stat.S_IMODE(tool.config_file.stat().st_mode) == 0o600
    yield tool
    for proc in tool.spawned:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=patient(10))


@pytest.fixture
def user(api: ApiServer, cli: Cli) -> httpx.Client:  # noqa: F811
    """The same user as the CLI's, to drive and inspect what the CLI did."""
    return api.client(headers={"Authorization": f"Bearer {cli.token}"})
