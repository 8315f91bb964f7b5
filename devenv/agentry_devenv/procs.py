"""Process helpers for local servers: free ports, process groups, readiness waits, clear errors."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ServerError(RuntimeError):
    """A local server could not start; the message says which, why, and includes its log tail."""


def _detach_and_tie_to_parent() -> None:
    """In the child: own process group (stop() kills the group), and SIGTERM if our parent dies.

    Without the second part a test session killed from outside would leave servers running.
    """
    os.setsid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quiet_port(host: str = "0.0.0.0") -> int:
    """A free port below the kernel's ephemeral range, for a port chosen well before a server binds
    it: no bind(0) or outgoing connection of any process can take it meanwhile (free_port's can)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, max(20001, low))
        if not port_in_use(port, host):
            return port
    raise RuntimeError(f"no free port between 20000 and {low}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def who_listens(port: int) -> str:
    """Best-effort description of the process listening on a TCP port (for error messages)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown process"
    return out or "unknown process"


def require_free_port(port: int, what: str, env_hint: str) -> None:
    if port_in_use(port):
        raise ServerError(
            f"port {port} for {what} is already in use by {who_listens(port)}. "
            f"Stop that process or choose another port with {env_hint}=<port>."
        )


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


@dataclass
class Proc:
    """A server process started in its own process group, with its output in a log file."""

    name: str
    argv: Sequence[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                preexec_fn=_detach_and_tie_to_parent,
            )
        except OSError as exc:
            raise ServerError(f"{self.name}: cannot execute {self.argv[0]}: {exc}") from exc
        finally:
            out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise ServerError(
                    f"{self.name} exited with code {code} before it was {what}. "
                    f"Log {self.log}:\n{log_tail(self.log)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.1)
        raise ServerError(
            f"{self.name} was not {what} after {timeout:.0f} s. Log {self.log}:\n{log_tail(self.log)}"
        )

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL the whole group at once (crash tests)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)
