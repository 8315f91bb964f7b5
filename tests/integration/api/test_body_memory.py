"""An unauthenticated 50 MB body costs the API no memory worth the name: the API runs as its own
process (as in a pod), a client streams 50 MiB at it without a Content-Length, the API answers 413, and
the process's resident memory, sampled every 10 ms throughout, never grows by a fraction of the body
(it would grow by at least the body if anything buffered it: the OOM kill of issue 18)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.procs import UVICORN_SERVING, Proc

pytestmark = pytest.mark.integration
BODY = 50 * 2**20


@pytest.fixture
def api_process(kube: ControlPlane, firestore_emulator: FirestoreEmulator, tmp_path: Path) -> Iterator[str]:
    proc = Proc(
        "api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "agentry_api.main:create_app",
            "--factory",
            "--host=127.0.0.1",
            "--port=0",
        ],
        tmp_path / "api.log",
        env={
            "KUBECONFIG": str(kube.kubeconfig),
            "FIRESTORE_EMULATOR_HOST": firestore_emulator.address,
            "GOOGLE_CLOUD_PROJECT": "body-memory",
            "AGENTRY_WATCH": "false",
        },
    ).start()
    try:
        port = int(proc.wait_for_log(UVICORN_SERVING, 60, "serving").group(1))
        yield f"http://127.0.0.1:{port}#{proc.pid}"
    finally:
        proc.stop()


def test_an_unauthenticated_50_mb_body_leaves_the_apis_memory_alone(api_process: str) -> None:
    url, pid = api_process.split("#")
    api = psutil.Process(int(pid))
    client = httpx.Client(base_url=url, headers={"host": "localhost"}, timeout=60)
    for _ in range(3):  # warm up the code paths a refusal takes (imports, first allocations)
        client.post("/api/agents", content=b"{}" * 1024, headers={"content-type": "application/json"})
    before = api.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, api.memory_info().rss)
            done.wait(0.01)

    def body() -> Iterator[bytes]:  # no Content-Length: only the bytes received can be counted
        yield b'{"name": "'
        for _ in range(BODY // 2**20):
            yield b"a" * 2**20
        yield b'"}'

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answer = client.post("/api/agents", content=body(), headers={"content-type": "application/json"})
    finally:
        done.set()
        sampler.join()
    assert answer.status_code == 413, answer.text
    grown = peak - before
    print(f"API RSS {before / 2**20:.1f} MiB, peak +{grown / 2**20:.1f} MiB for a {BODY // 2**20} MiB body")
    assert grown < BODY // 4, f"the API's memory grew by {grown / 2**20:.1f} MiB while refusing the body"
    assert client.get("/healthz").status_code == 200
