"""Ports without races (procs.py): a server on a port another process holds is started again on
another port; servers that bind port 0 report theirs; a server that never gets ready is stopped with
its whole process tree (the Firestore emulator's JVM)."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agentry_localcluster import firestore
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.procs import (
    PortInUse,
    Proc,
    ServerError,
    avoid_ports,
    listening_socket,
    port_in_use,
    quiet_port,
    quiet_socket,
    refused_port,
    start_with_ports,
)
from agentry_localcluster.proctable import group_pids

pytestmark = pytest.mark.unit

# A tiny HTTP server taking its port on the command line, as etcd or kube-apiserver do: it fails with
# "address already in use" when the port is taken (Python's own message, like Go's and Java's).
SERVER = textwrap.dedent(
    """
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def held() -> Iterator[socket.socket]:
    """A port this test holds (listening), below the ephemeral range like the ones servers get."""
    sock = quiet_socket("127.0.0.1")
    yield sock
    sock.close()


def _launcher(tmp_path: Path, started: list[tuple[Proc, int]]) -> Callable[[tuple[int, ...]], int]:
    def launch(ports: tuple[int, ...]) -> int:
        (port,) = ports
        proc = Proc("toy", [sys.executable, "-c", SERVER, str(port)], tmp_path / "toy.log").start()
        started.append((proc, port))
        proc.wait_ready(
            lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=1).text == "ok", 20, "serving", ports=ports
        )
        return port

    return launch


def test_server_on_a_taken_port_starts_again_on_another(
    tmp_path: Path, held: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = held.getsockname()[1]
    offered = iter([taken])  # the first port offered is the held one; then any quiet port
    real = quiet_port

    def port_picker(host: str = "0.0.0.0", exclude: tuple[int, ...] = ()) -> int:
        return next(offered, None) or real(host, exclude)

    monkeypatch.setattr("agentry_localcluster.procs.quiet_port", port_picker)
    started: list[tuple[Proc, int]] = []
    port = start_with_ports("toy", 1, _launcher(tmp_path, started))
    try:
        assert port != taken
        assert [p for _, p in started] == [taken, port]
        first, _ = started[0]
        assert not first.alive()  # exited on EADDRINUSE, reported as PortInUse, not an error
        assert "address already in use" in first.output().decode().lower()
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "ok"
        assert started[1][0].owns_ports([port]) is True
    finally:
        for proc, _ in started:
            proc.stop()


def test_another_process_answering_on_the_port_is_not_taken_for_the_server(tmp_path: Path) -> None:
    """A foreign server answers the readiness check on our port: PortInUse, never "ready"."""
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        # A server that never binds (sleeps) while the check already succeeds against `foreign`.
        proc = Proc(
            "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log"
        ).start()
        with pytest.raises(PortInUse, match="another process listens"):
            proc.wait_ready(lambda: True, 10, "serving", ports=(port,))
        assert not proc.alive()


def test_retries_are_bounded_with_a_clear_error(
    tmp_path: Path, held: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = held.getsockname()[1]
    monkeypatch.setattr("agentry_localcluster.procs.quiet_port", lambda host="0.0.0.0", exclude=(): taken)
    started: list[tuple[Proc, int]] = []
    with pytest.raises(ServerError, match=r"toy: its ports were taken by other processes 3 times") as err:
        start_with_ports("toy", 1, _launcher(tmp_path, started), attempts=3)
    assert not isinstance(err.value, PortInUse)
    assert len(started) == 3 and not any(p.alive() for p, _ in started)


def test_exit_without_address_in_use_is_an_error_not_a_retry(tmp_path: Path) -> None:
    calls = []

    def launch(ports: tuple[int, ...]) -> None:
        calls.append(ports)
        proc = Proc("broken", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "b.log").start()
        proc.wait_ready(lambda: False, 10, "serving", ports=ports)

    with pytest.raises(ServerError, match="exited with code 3") as err:
        start_with_ports("broken", 1, launch)
    assert not isinstance(err.value, PortInUse) and len(calls) == 1


def test_start_with_ports_gives_distinct_quiet_ports() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = start_with_ports("x", 4, lambda p: p)
    assert len(set(ports)) == 4 and all(20000 <= p < max(20001, low) for p in ports)


def test_quiet_port_avoids_ports_registered_for_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agentry_localcluster.procs._ephemeral_low", lambda: 20002)  # offers 20000, 20001
    monkeypatch.setattr("agentry_localcluster.procs._AVOID", set())
    held = [p for p in (20000, 20001) if port_in_use(p, "0.0.0.0")]
    if held:
        pytest.fail(f"ports {held} are in use on this machine: the test needs 20000 and 20001 free")
    avoid_ports(20000)
    assert {quiet_port() for _ in range(20)} == {20001}


def test_in_process_servers_bind_port_zero_and_report() -> None:
    sock = listening_socket()
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        sock.close()


def test_refused_port_refuses_and_stays_held() -> None:
    with refused_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))


def test_wait_for_log_reads_the_port_a_child_bound(tmp_path: Path) -> None:
    code = "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
    code += "print('listening on', s.getsockname()[1], flush=True); time.sleep(60)"
    proc = Proc("child", [sys.executable, "-c", code], tmp_path / "c.log").start()
    try:
        port = int(proc.wait_for_log(r"listening on (\d+)", 20, "listening").group(1))
        assert proc.owns_ports([port]) is True
    finally:
        proc.stop()


def test_a_port_bound_while_its_owner_is_checked_counts_as_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that binds its second port just as readiness is checked: the listener appears at the
    moment /proc/net is read, so the group's sockets must be read after it, not before."""
    from agentry_localcluster import procs

    opened: set[int] = set()

    def listeners(port: int) -> set[int]:
        opened.add(port)  # the server binds this port now
        return {port}

    monkeypatch.setattr(procs, "listener_inodes", listeners)
    monkeypatch.setattr(procs, "group_socket_inodes", lambda _pgid: set(opened))
    proc = Proc("child", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "c.log").start()
    try:
        assert proc.owns_ports([4101, 4102]) is True
    finally:
        proc.stop()


# --- The Firestore emulator never leaves a JVM behind ---------------------------------------------


def _fake_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `java` that starts a child (like a JVM's helper processes), ignores SIGTERM and never
    answers: readiness is impossible. Returns the file where it writes its pids."""
    sdk = tmp_path / "sdk"
    (sdk / firestore.JAR).parent.mkdir(parents=True)
    (sdk / firestore.JAR).write_bytes(b"")
    pids = tmp_path / "pids"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(
        "#!/bin/sh\n"
        "trap '' TERM\n"
        f"sleep 300 & echo $! >> {pids}\n"
        f"echo $$ >> {pids}\n"
        "while :; do sleep 1; done\n"
    )
    java.chmod(0o755)
    monkeypatch.setenv("CLOUDSDK_ROOT_DIR", str(sdk))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return pids


def test_firestore_that_never_gets_ready_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids_file = _fake_sdk(tmp_path, monkeypatch)
    monkeypatch.setattr(FirestoreEmulator, "_answers", lambda self: False)
    emulator = FirestoreEmulator(tmp_path / "fs")
    started = time.monotonic()
    with pytest.raises(ServerError, match="was not answering after 2 s"):
        emulator.start(timeout=2)
    assert time.monotonic() - started < 30
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2  # the "JVM" and its child
    assert emulator.proc is not None
    assert not [p for p in pids if _alive(p)]
    assert group_pids(emulator.proc.pid) == []


def test_firestore_retries_on_a_taken_port_without_leaving_the_failed_jvm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator exits with a BindException on a taken port: started again on another port."""
    sdk = tmp_path / "sdk"
    (sdk / firestore.JAR).parent.mkdir(parents=True)
    (sdk / firestore.JAR).write_bytes(b"")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # First run: fail like the JVM does; then serve "Ok" as the emulator's root does.
    marker = tmp_path / "failed-once"
    serve = (
        "import http.server,sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'Ok')\n"
        "port=int([a for a in sys.argv if a.startswith('--port=')][0][7:])\n"
        "http.server.HTTPServer(('127.0.0.1', port), H).serve_forever()\n"
    )
    (bin_dir / "serve.py").write_text(serve)
    (bin_dir / "java").write_text(
        "#!/bin/sh\n"
        f"if [ ! -e {marker} ]; then touch {marker}; "
        "echo 'java.net.BindException: Address already in use'; exit 1; fi\n"
        f'exec {sys.executable} {bin_dir / "serve.py"} "$@"\n'
    )
    (bin_dir / "java").chmod(0o755)
    monkeypatch.setenv("CLOUDSDK_ROOT_DIR", str(sdk))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    emulator = FirestoreEmulator(tmp_path / "fs").start(timeout=20)
    try:
        assert httpx.get(emulator.url + "/", timeout=5).text == "Ok"
        log = (tmp_path / "fs" / "firestore.log").read_text()
        assert log.count("Address already in use") == 1
    finally:
        emulator.stop()
    assert emulator.proc is not None and not emulator.proc.alive()
