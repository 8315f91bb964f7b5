"""Process helpers for local servers: ports, process groups, readiness waits, clear errors.

Ports, without races. `bind(port 0)`, close, and start a server on that port later is a race: any
bind(0) or outgoing connection on the machine can take the port in between. So:

* in-process servers (uvicorn apps, relays, scripted LLMs, gRPC fakes) bind port 0 themselves
  (`listening_socket()`) and report the port they got;
* child processes that can bind port 0 report theirs (read it from their output: `Proc.wait_for_log`);
* a binary that needs its port on the command line gets one with `start_with_ports`: it picks ports
  below the kernel's ephemeral range (`quiet_port`: no bind(0) or outgoing connection takes those),
  starts the server, and starts it again on new ports if it fails with "address already in use"
  or another process answers on its port (`Proc.wait_ready(ports=...)` checks the listening socket
  belongs to the server's process group), a bounded number of times.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .proctable import group_pids, group_socket_inodes, listener_inodes, who_listens

T = TypeVar("T")

# Go ("bind: address already in use"), Java ("BindException: Address already in use"), Python/uvicorn
# ("[Errno 98] ... address already in use").
ADDRESS_IN_USE = re.compile(rb"address already in use|EADDRINUSE", re.IGNORECASE)
PORT_ATTEMPTS = 5


class ServerError(RuntimeError):
    """A local server could not start; the message says which, why, and includes its log tail."""


class PortInUse(ServerError):
    """A server could not have the port it was given (another process has it): try other ports."""


SETPRIV = shutil.which("setpriv")  # util-linux, on every Debian


def tied_to_parent(argv: Sequence[str]) -> list[str]:
    """The command, SIGTERMed if our process dies (PR_SET_PDEATHSIG), set by `setpriv` before it
    execs it: no Python runs in the forked child. Running Python there (a preexec_fn) can abort
    the child while other threads hold locks (gRPC's Firestore listeners in a test process do)."""
    if SETPRIV is None or shutil.which(argv[0]) is None:  # a missing command: Popen says so
        return list(argv)
    return [SETPRIV, "--pdeathsig", "TERM", "--", *argv]


def detached() -> dict[str, Any]:
    """Popen's arguments for a server in its own process group (stop() kills the group)."""
    if SETPRIV is None:
        return {"preexec_fn": _detach_and_tie_to_parent}
    return {"start_new_session": True}


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


# What uvicorn logs once it listens (a server started on port 0 says there which port it got).
UVICORN_SERVING = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"


def listening_socket(host: str = "127.0.0.1", port: int = 0, backlog: int = 128) -> socket.socket:
    """A listening TCP socket (port 0: the kernel picks a free one); hand it to the server itself."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


# Ports this process will listen on later (e.g. `make dev`'s fixed ports, bound only at the end):
# quiet_port never offers them to another of our servers meanwhile.
_AVOID: set[int] = set()


def avoid_ports(*ports: int) -> None:
    """Keep `quiet_port` (and so `start_with_ports`) off these ports in this process."""
    _AVOID.update(p for p in ports if p)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def quiet_port(host: str = "0.0.0.0", exclude: Sequence[int] = ()) -> int:
    """A free port below the kernel's ephemeral range, for a port chosen well before a server binds
    it: no bind(0) or outgoing connection of any process can take it meanwhile. Another process
    choosing ports explicitly still can: `start_with_ports` retries, and `quiet_socket` binds at once.
    """
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, max(20001, low))
        if port not in exclude and port not in _AVOID and not port_in_use(port, host):
            return port
    raise RuntimeError(f"no free port between 20000 and {low}")


def quiet_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on a quiet port (below the ephemeral range): for a server that must listen
    on the same port again after closing it (nothing but an explicit bind can take it meanwhile)."""
    for _ in range(50):
        try:
            return listening_socket(host, quiet_port(host))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:  # taken since quiet_port looked
                raise
    raise RuntimeError("no free quiet port after 50 attempts")


@contextlib.contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port where connections are refused for as long as the context lasts: bound, never listening,
    so no other process can start listening on it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        yield int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def require_free_port(port: int, what: str, env_hint: str, *, anywhere: bool = False) -> None:
    """A port the user chose must be free: on loopback, and with `anywhere` on every address too
    (for a server that binds them all)."""
    if port_in_use(port) or (anywhere and port_in_use(port, "0.0.0.0")):
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


def start_with_ports(
    what: str,
    count: int,
    launch: Callable[[tuple[int, ...]], T],
    attempts: int = PORT_ATTEMPTS,
    host: str = "0.0.0.0",
) -> T:
    """Start a server that needs `count` ports up front: `launch(ports)` starts it and waits until it is
    ready (`Proc.wait_ready(..., ports=ports)`), raising PortInUse if another process has one of them.
    Then this picks new quiet ports and launches again, at most `attempts` times in all."""
    failures: list[str] = []
    for _ in range(attempts):
        ports: list[int] = []
        for _ in range(count):
            ports.append(quiet_port(host, exclude=ports))
        try:
            return launch(tuple(ports))
        except PortInUse as exc:
            failures.append(f"ports {ports}: {str(exc).splitlines()[0]}")
    raise ServerError(
        f"{what}: its ports were taken by other processes {attempts} times in a row:\n" + "\n".join(failures)
    )


@dataclass
class Proc:
    """A server process started in its own process group, with its output in a log file."""

    name: str
    argv: Sequence[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Where this run's output starts in the log (the log is appended to across restarts).
    _log_start: int = field(default=0, repr=False)
    _scanned: int = field(default=0, repr=False)

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self._log_start = self._scanned = out.tell()
        try:
            self.popen = subprocess.Popen(
                tied_to_parent(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                **detached(),
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

    def output(self) -> bytes:
        """What this run (since the last start) wrote to the log."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._log_start)
                return f.read()
        except OSError:
            return b""

    def _address_in_use(self) -> bool:
        """Whether this run logged "address already in use" (reads only what is new since last time)."""
        try:
            with self.log.open("rb") as f:
                # Overlap the previous read a little: a match may straddle two reads.
                start = max(self._log_start, self._scanned - 64)
                f.seek(start)
                data = f.read()
        except OSError:
            return False
        self._scanned = start + len(data)
        return ADDRESS_IN_USE.search(data) is not None

    def owns_ports(self, ports: Sequence[int]) -> bool | None:
        """True if this process group listens on every port; False if another process listens on one
        of them; None if some port has no listener yet."""
        if self.popen is None:
            return None
        # Listeners first, then the group's sockets: a listener this group opens between the two reads
        # is then in both, never taken for a stranger's (the server may bind its ports one by one).
        listeners = [listener_inodes(port) for port in ports]
        mine = group_socket_inodes(self.popen.pid)
        result: bool | None = True
        for found in listeners:
            if not found:
                result = None
            elif not found & mine:
                return False
        return result

    def wait_ready(
        self,
        check: Callable[[], bool],
        timeout: float,
        what: str = "ready",
        ports: Sequence[int] = (),
    ) -> None:
        """Wait for `check()`; on failure stop the process (its whole group) and raise ServerError.

        With `ports` (the ports it was told to listen on), also require that its process group is
        what listens on them, and raise PortInUse if another process has one (it answered `check`,
        or this server logged "address already in use"): `start_with_ports` then tries other ports.
        """
        try:
            self._wait_ready(check, timeout, what, tuple(ports))
        except BaseException:
            self.stop(grace=5)
            raise

    def _wait_ready(
        self, check: Callable[[], bool], timeout: float, what: str, ports: tuple[int, ...]
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                error = PortInUse if ports and self._address_in_use() else ServerError
                raise error(
                    f"{self.name} exited with code {code} before it was {what}. "
                    f"Log {self.log}:\n{log_tail(self.log)}"
                )
            if ports and self._address_in_use():
                raise PortInUse(
                    f"{self.name} could not listen on one of ports {list(ports)} (address already in use). "
                    f"Log {self.log}:\n{log_tail(self.log)}"
                )
            ready = False
            with contextlib.suppress(Exception):
                ready = check()
            if ready and ports:
                owned = self.owns_ports(ports)
                if owned is False:
                    raise PortInUse(
                        f"another process listens on one of the ports {list(ports)} of {self.name}: "
                        + "; ".join(who_listens(p) for p in ports)
                    )
                ready = owned is True
            if ready:
                return
            time.sleep(0.1)
        raise ServerError(
            f"{self.name} was not {what} after {timeout:.0f} s. Log {self.log}:\n{log_tail(self.log)}"
        )

    def wait_for_log(self, pattern: str, timeout: float, what: str) -> re.Match[bytes]:
        """Wait until this run's output matches `pattern` (e.g. the port a server bound); stop the
        process and raise ServerError if it exits or the time runs out first."""
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                match = regex.search(self.output())
                if match:
                    return match
                if not self.alive():
                    code = self.popen.returncode if self.popen else None
                    raise ServerError(
                        f"{self.name} exited with code {code} before it was {what}. "
                        f"Log {self.log}:\n{log_tail(self.log)}"
                    )
                time.sleep(0.05)
            raise ServerError(
                f"{self.name} was not {what} after {timeout:.0f} s. Log {self.log}:\n{log_tail(self.log)}"
            )
        except BaseException:
            self.stop(grace=5)
            raise

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; then SIGKILL whatever of the
        group outlived its leader (a child that ignored SIGTERM)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._kill_stragglers()

    def kill(self) -> None:
        """SIGKILL the whole group at once (crash tests)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)

    def _kill_stragglers(self) -> None:
        assert self.popen is not None
        deadline = time.monotonic() + 5
        while group_pids(self.popen.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            time.sleep(0.05)
