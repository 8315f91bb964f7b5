"""The Firestore emulator restarted under API load (issue 16, faults): the real emulator of this test
alone, its data exported (the emulator's export endpoint) before it stops and imported when it starts
again on the same port, as a restarted (durable) Firestore looks to its clients. The load pauses only
for the instant of the export, so that no write is acknowledged after the snapshot and before the stop.

While it is down, the API answers 503 with a reason and Retry-After, never a 500 and never a hang;
after it is back the same API process serves again without a restart, and every write it
acknowledged (201) before, during or after the outage is there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from google.cloud import firestore

from agentry_api.services.feed import EventFeed
from agentry_localcluster import localhttp
from agentry_localcluster.firestore import JAR, MAIN, sdk_root
from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.procs import Proc, start_with_ports
from tests.fixtures.helpers import eventually

from .server import ApiServer, api_settings, start_api

pytestmark = [pytest.mark.integration, pytest.mark.long]

DOWN_SECONDS = 30
DEADLINE_SECONDS = 3.0  # the API's request deadline here (15 s by default)
PROJECT = "restart-test"


@dataclass
class DurableEmulator:
    """The Firestore emulator with --export-on-exit, restartable on its port with --import-data."""

    workdir: Path
    port: int = 0
    proc: Proc | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        argv = ["java", "-Xms64m", "-cp", str(sdk_root() / JAR), MAIN, "start", "--host=127.0.0.1"]
        exported = sorted((self.workdir / "export").glob("*/*.overall_export_metadata"))
        return [*argv, f"--port={self.port}", *([f"--import-data={exported[-1]}"] if exported else [])]

    def _answers(self) -> bool:
        return localhttp.get(f"http://{self.address}/", timeout=1).text.strip() == "Ok"

    def _start_on(self, ports: tuple[int, ...]) -> None:
        (self.port,) = ports
        self.proc = Proc("firestore-emulator", self._argv(), self.workdir / "firestore.log").start()
        self.proc.wait_ready(self._answers, 60, "answering", ports=ports)

    def start(self) -> DurableEmulator:
        start_with_ports("the Firestore emulator", 1, self._start_on)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def export(self, project: str) -> None:
        target = self.workdir / "export"
        target.mkdir(parents=True, exist_ok=True)
        r = localhttp.post(
            f"http://{self.address}/emulator/v1/projects/{project}:export",
            json={"database": f"projects/{project}/databases/(default)", "export_directory": str(target)},
            timeout=60,
        )
        r.raise_for_status()

    def restart(self, project: str, down_seconds: float, quiet: threading.Lock) -> None:
        """Export and stop while `quiet` is held (no write in flight), then stay down a while."""
        with quiet:
            self.export(project)
            self.stop()
        time.sleep(down_seconds)
        self._start_on((self.port,))  # its own port again: the API's clients know only that address


@dataclass
class Load:
    """Token creations and reads by one user in a loop; every answer and every acknowledged token."""

    client: httpx.Client
    codes: Counter[int] = field(default_factory=Counter)
    created: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    quiet: threading.Lock = field(default_factory=threading.Lock)  # held around each request

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                with self.quiet:
                    r = self.client.post("/api/tokens", json={"name": f"t{i}"}, timeout=30)
            except httpx.HTTPError as exc:  # a hang or a dropped connection is a failure too
                self.bad.append(f"request error {exc!r}")
                continue
            self.codes[r.status_code] += 1
            if r.status_code == 201:
                self.created.append(r.json()["id"])
            elif r.status_code == 503:
                body = r.json()
                if body.get("reason") != "Unavailable" or "retry-after" not in r.headers:
                    self.bad.append(f"503 without a reason or Retry-After: {r.headers} {body}")
            else:
                self.bad.append(f"{r.status_code} {r.text[:300]}")
            time.sleep(0.05)


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DurableEmulator]:
    own = DurableEmulator(tmp_path / "firestore").start()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", own.address)  # the API's clients are made at start
    yield own
    own.stop()


def test_the_api_rides_out_a_firestore_restart(
    emulator: DurableEmulator, namespace: str, kube: ControlPlane, crds: None
) -> None:
    api: ApiServer = start_api(
        api_settings(
            PROJECT,
            namespace,
            str(kube.kubeconfig),
            quota_tokens=100_000,
            request_deadline_seconds=DEADLINE_SECONDS,
        )
    )
    try:
        token = api.client(headers={"Authorization": "Bearer admin-token-for-tests"})
        load = Load(token)
        worker = threading.Thread(target=load.run)
        worker.start()
        time.sleep(3)
        emulator.restart(PROJECT, DOWN_SECONDS, load.quiet)
        back = time.monotonic()
        acked = len(load.created)
        # Recovery on its own: gRPC reconnects with backoff (up to 2 minutes between attempts).
        eventually(lambda: len(load.created) >= acked + 3, 150, "the API to store writes again")
        print(f"writes acknowledged again {time.monotonic() - back:.1f} s after Firestore was back")
        load.stop.set()
        worker.join(60)
        assert not load.bad, load.bad[:5]
        assert load.codes[503] > 0, load.codes  # the outage was seen, as 503s only
        r = token.get("/api/tokens", params={"limit": 100})
        listed: set[str] = set()
        while True:
            assert r.status_code == 200, r.text
            listed |= {t["id"] for t in r.json()["items"]}
            cursor = r.json()["nextCursor"]
            if not cursor:
                break
            r = token.get("/api/tokens", params={"limit": 100, "cursor": cursor})
        missing = set(load.created) - listed
        assert not missing, f"{len(missing)} acknowledged tokens lost: {sorted(missing)[:5]}"
    finally:
        api.stop()


def test_listeners_replaced_or_stopped_while_firestore_is_down_end(emulator: DurableEmulator) -> None:
    """The API's feeds replace their listener every window, also while Firestore is down: each listener
    they replace or stop ends its thread, and none goes on reopening its stream (the library retries
    an unavailable stream without a pause, a thread per attempt, for the life of the process)."""
    before = set(threading.enumerate())
    feed = EventFeed(lambda: firestore.Client(project=PROJECT), window=1.0)
    loop = asyncio.new_event_loop()
    try:
        feed.start(loop, lambda keys: None)
        eventually(lambda: feed.snapshots > 0, what="the listener's first snapshot")
        emulator.stop()
        time.sleep(3)  # windows go by: listeners are replaced while nothing answers
        feed.stop()
        eventually(lambda: not _listening(before), 15, "every listener's thread to end")
    finally:
        loop.close()


def _listening(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t not in before and t.name == "Thread-ConsumeBidirectionalStream"
    ]
