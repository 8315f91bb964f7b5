"""`agentry-dev up`: the whole platform on this machine, for development (`make dev`).

Starts the Firestore emulator, a local control plane (etcd, kube-apiserver, kube-controller-manager),
applies the CRDs and sample agents, then runs the operator and the API in the foreground. Ctrl-C (or
SIGTERM) stops every process it started. Ports in use are reported with the port and what to do.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from .firestore import FirestoreEmulator
from .kube import REPO, ControlPlane
from .procs import Proc, ServerError, require_free_port

CRDS = REPO / "manifests" / "crds"
SAMPLES = REPO / "manifests" / "samples"


def _say(msg: str) -> None:
    print(f"[agentry] {msg}", flush=True)


class Stack:
    def __init__(
        self, workdir: Path, api_port: int, apiserver_port: int, firestore_port: int, project: str
    ) -> None:
        self.workdir = workdir
        self.api_port = api_port
        self.project = project
        self.firestore = FirestoreEmulator(workdir / "firestore", port=firestore_port)
        self.kube = ControlPlane(workdir / "kube", apiserver_port=apiserver_port)
        self.procs: list[Proc] = []

    def up(self) -> None:
        require_free_port(self.api_port, "the Agentry API", "AGENTRY_API_PORT")
        t0 = time.monotonic()
        _say("1/5 Firestore emulator ...")
        self.firestore.start()
        _say(f"    Firestore emulator on {self.firestore.address}")
        _say("2/5 Kubernetes control plane (the first run builds the binaries: 10-25 min) ...")
        self.kube.start()
        _say(f"    kube-apiserver on {self.kube.server}; KUBECONFIG={self.kube.kubeconfig}")
        _say("3/5 CRDs ...")
        self.kube.kubectl("apply", "--server-side", "-f", str(CRDS))
        self.kube.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/agents.agentry.dev",
            "crd/executions.agentry.dev",
        )
        env = {
            **self.kube.env(),
            **self.firestore.env(),
            "GOOGLE_CLOUD_PROJECT": self.project,
            "AGENTRY_NAMESPACE": "default",
        }
        _say("4/5 operator ...")
        operator = Proc(
            "agentry-operator",
            [sys.executable, "-m", "agentry_operator.main", "--all-namespaces"],
            self.workdir / "operator.log",
            env=env,
        ).start()
        self.procs.append(operator)
        _say("5/5 API and dashboard ...")
        api = Proc(
            "agentry-api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "agentry_api.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
            ],
            self.workdir / "api.log",
            env=env,
        ).start()
        self.procs.append(api)
        api.wait_ready(
            lambda: httpx.get(f"http://127.0.0.1:{self.api_port}/healthz", timeout=1).is_success,
            60,
            "serving /healthz",
        )
        if SAMPLES.exists():
            self.kube.kubectl("apply", "-f", str(SAMPLES), check=False)
        _say(f"ready in {time.monotonic() - t0:.0f} s")
        _say(f"    dashboard:  http://127.0.0.1:{self.api_port}/")
        _say(f"    kubectl:    export KUBECONFIG={self.kube.kubeconfig}")
        _say(f"    logs:       {self.workdir}/*.log")
        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("OPENAI_API_KEY")):
            _say(
                "    no LLM provider configured: set ANTHROPIC_API_KEY, or OPENAI_API_KEY with "
                "OPENAI_BASE_URL for an OpenAI-compatible endpoint (e.g. a local LLM), then "
                "restart. Runs will fail with LLM_REQUIRED until then."
            )
        _say("Ctrl-C stops everything.")

    def watch(self) -> int:
        """Block until a signal or until a child dies (then report which and why)."""
        while True:
            for p in self.procs:
                if not p.alive():
                    _say(f"{p.name} exited unexpectedly; see {p.log}")
                    return 1
            time.sleep(0.5)

    def down(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.kube.stop()
        self.firestore.stop()
        _say("stopped every process")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentry-dev", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the platform in the foreground; Ctrl-C stops it")
    up.add_argument("--workdir", type=Path, default=Path(os.environ.get("AGENTRY_DEV_DIR", REPO / ".dev")))
    up.add_argument("--api-port", type=int, default=int(os.environ.get("AGENTRY_API_PORT", 8000)))
    up.add_argument("--apiserver-port", type=int, default=int(os.environ.get("AGENTRY_APISERVER_PORT", 6443)))
    up.add_argument("--firestore-port", type=int, default=int(os.environ.get("AGENTRY_FIRESTORE_PORT", 8681)))
    up.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", "agentry-dev"))
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = Stack(args.workdir, args.api_port, args.apiserver_port, args.firestore_port, args.project)
    code = 0
    try:
        stack.up()
        code = stack.watch()
    except KeyboardInterrupt:
        _say("interrupted; stopping")
    except ServerError as exc:
        _say(f"error: {exc}")
        code = 1
    finally:
        stack.down()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
