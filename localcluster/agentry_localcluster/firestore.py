"""Google's Firestore emulator, started from the installed Google Cloud CLI.

Running the emulator jar with Java directly starts in about a second, against two with
`gcloud emulators firestore start`, and leaves no orphaned java child when stopped.

The JVM compiles with C1 only (`-XX:TieredStopAtLevel=1`): an emulator lives minutes, and C2's
compiler threads cost more CPU over that span than its faster code saves (`python -m
bench.emulator_cpu`).

The emulator takes `--port=0` but then reports port 0 (and listens on several ports), so it gets a
quiet port up front and starts again on another if that one is taken (`start_with_ports`). If it does
not become ready, its process group (the JVM) is stopped before the error is raised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import localhttp
from .procs import Proc, ServerError, require_free_port, start_with_ports

JAR = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
JVM_FLAGS = ("-Xms64m", "-XX:TieredStopAtLevel=1")


def sdk_root() -> Path:
    env = os.environ.get("CLOUDSDK_ROOT_DIR")
    if env:
        return Path(env)
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise ServerError(
            "the Google Cloud CLI (gcloud) is not installed; the Firestore emulator ships with it. "
            "Install google-cloud-cli and its cloud-firestore-emulator component."
        )
    # gcloud is usually a symlink into <sdk>/bin; asking gcloud itself costs a second.
    candidate = Path(gcloud).resolve().parent.parent
    if (candidate / JAR).exists():
        return candidate
    out = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
    )
    return Path(out.stdout.strip())


@dataclass
class FirestoreEmulator:
    workdir: Path
    port: int = 0
    host: str = "127.0.0.1"
    jvm_flags: tuple[str, ...] = JVM_FLAGS
    proc: Proc | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = 60) -> FirestoreEmulator:
        jar = sdk_root() / JAR
        if not jar.exists():
            raise ServerError(
                f"Firestore emulator jar not found at {jar}: install the Google Cloud CLI component "
                "cloud-firestore-emulator (apt: google-cloud-cli-firestore-emulator)."
            )
        java = shutil.which("java")
        if java is None:
            raise ServerError("java is not installed; the Firestore emulator needs a JRE (11+).")
        if self.port:  # the user's port (`make dev`): one attempt, a clear error if it is taken
            require_free_port(self.port, "the Firestore emulator", "AGENTRY_FIRESTORE_PORT")
            self._start_on(java, jar, timeout, (self.port,))
        else:
            start_with_ports(
                "the Firestore emulator",
                1,
                lambda ports: self._start_on(java, jar, timeout, ports),
                host=self.host,
            )
        return self

    def _start_on(self, java: str, jar: Path, timeout: float, ports: tuple[int, ...]) -> None:
        (self.port,) = ports
        self.proc = Proc(
            "firestore-emulator",
            [
                java,
                *self.jvm_flags,
                "-cp",
                str(jar),
                MAIN,
                "start",
                f"--host={self.host}",
                f"--port={self.port}",
            ],
            self.workdir / "firestore.log",
        ).start()
        try:
            self.proc.wait_ready(self._answers, timeout, "answering", ports=ports)
        except BaseException:
            # wait_ready stops it already; said again here because a JVM left behind is the one
            # failure this fixture must never have (KeyboardInterrupt included).
            self.proc.stop(grace=5)
            raise

    def _answers(self) -> bool:
        return localhttp.get(self.url + "/", timeout=1).text.strip() == "Ok"

    def wipe(self, project: str) -> None:
        """Delete every document of a project (about 0.2 s)."""
        url = f"{self.url}/emulator/v1/projects/{project}/databases/(default)/documents"
        localhttp.delete(url, timeout=30).raise_for_status()

    def env(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.address}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
