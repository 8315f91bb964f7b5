"""`agentry-dev`: the whole platform on this machine, in a real local cluster (`make dev`).

    agentry-dev up [--detach]   images, cluster (control plane + node + DNS), Firestore emulator, Agentry
                                (Helm chart, with the LLM gateway), the dashboard on localhost, sample
                                agents; Ctrl-C stops all
    agentry-dev status          what runs, and whether it is healthy
    agentry-dev doctor          `agentry doctor` against it: every LLM channel through the gateway,
                                Firestore, the API server, the operator and the API, with fixes
    agentry-dev down [--wipe]   stop a running `up` (also a detached one) and remove what it left behind

See docs/dev-cluster.md for how the cluster is built and for troubleshooting.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from agentry_cli import doctor
from agentry_common.tokens import Keyring, mint_service_token

from . import localhttp
from . import node as n
from .cluster import Cluster
from .dns import dns_query
from .firestore import FirestoreEmulator
from .images import build_images
from .install import DEV_DAILY_BUDGET_USD, SYSTEM_NS, WORKLOADS_NS, Install, Providers
from .kube import REPO
from .procs import Proc, ServerError, avoid_ports, require_free_port
from .running import lock_holder, read_state, stack_processes, stop_running, write_state_extra
from .signin import admin_token, signed_in_link

READY_LINE = "Ctrl-C stops everything"
OPERATOR_HEALTH_PORT = 8080  # the chart's operator.healthPort
STEPS = 6


def _say(msg: str) -> None:
    print(f"[agentry] {msg}", flush=True)


def _step(i: int, msg: str) -> None:
    _say(f"{i}/{STEPS} {msg}")


class Stack:
    def __init__(
        self, workdir: Path, api_port: int, apiserver_port: int, firestore_port: int, project: str
    ) -> None:
        self.workdir = workdir
        self.api_port = api_port
        self.apiserver_port = apiserver_port
        self.firestore_port = firestore_port
        self.project = project
        self.providers = Providers.from_env(dict(os.environ))
        # Governed by default: the LLM gateway holds the keys; AGENTRY_DEV_GATEWAY=0 gives runs the keys.
        self.gateway = os.environ.get("AGENTRY_DEV_GATEWAY", "1") != "0"
        self.daily_budget = os.environ.get("AGENTRY_DEV_DAILY_BUDGET_USD") or DEV_DAILY_BUDGET_USD
        self.cluster = Cluster(workdir, apiserver_port=apiserver_port, owner="agentry-dev up")
        self.firestore = FirestoreEmulator(workdir / "firestore", port=firestore_port, host=n.NODE_IP)
        self.procs: list[Proc] = []

    def up(self) -> None:
        self._check_ports()
        t0 = time.monotonic()
        _step(1, "images: workspace, operator, API, gateway (Docker, offline; first build ~5 min) ...")
        images = build_images(_say)
        _step(
            2, "cluster: control plane, node, DNS (the first run builds the Kubernetes binaries: ~10 min) ..."
        )
        self.cluster.up(_say, images)
        _say(f"    kube-apiserver on {self.cluster.plane.server}; node {n.NODE_NAME} at {n.NODE_IP}")
        _step(3, "Firestore emulator ...")
        self.firestore.start()
        _say(f"    Firestore emulator on {self.firestore.address}")
        _step(4, "Agentry (Helm chart charts/agentry: CRDs, operator, API, LLM gateway) ...")
        install, has_key = self._install()
        _step(5, "dashboard ...")
        self._start_relay(install.api_service())
        _step(6, "sample agents ...")
        samples = install.apply_samples()
        _say(f"    applied {', '.join(samples)} in namespace {WORKLOADS_NS}")
        dashboard = f"http://127.0.0.1:{self.api_port}/"
        write_state_extra(
            dashboard=dashboard,
            kubeconfig=str(self.cluster.plane.kubeconfig),
            firestore=self.firestore.address,
            project=self.project,
        )
        _say(f"ready in {time.monotonic() - t0:.0f} s")
        self._say_ready(dashboard, install, has_key)

    def _check_ports(self) -> None:
        """The fixed ports are free and no other local cluster runs, before anything starts."""
        require_free_port(self.api_port, "the Agentry API", "AGENTRY_API_PORT")
        require_free_port(self.apiserver_port, "kube-apiserver", "AGENTRY_APISERVER_PORT", anywhere=True)
        require_free_port(
            self.firestore_port, "the Firestore emulator", "AGENTRY_FIRESTORE_PORT", anywhere=True
        )
        # Bound only later (the API relay at the very end): no server of ours gets them meanwhile.
        avoid_ports(self.api_port, self.apiserver_port, self.firestore_port)
        holder = lock_holder()
        if holder is not None:
            raise ServerError(
                f"a local cluster already runs: pid {holder.get('pid')} ({holder.get('owner')}, "
                f"{holder.get('workdir')}). `agentry-dev status` shows it; `agentry-dev down` stops it."
            )

    def _install(self) -> tuple[Install, bool]:
        """The Helm chart and the provider keys' Secret; whether a key was configured."""
        install = Install(
            self.cluster,
            self.firestore.address,
            self.project,
            self.providers,
            gateway=self.gateway,
            daily_budget_usd=self.daily_budget,
            api_env={"AGENTRY_ADMIN_TOKEN": admin_token(self.workdir)},
        )
        install.install(_say)
        has_key = install.apply_secret()
        if self.gateway:
            _say(
                f"    LLM gateway: runs call it with a per-run token; keys only in {SYSTEM_NS}/llm-keys; "
                f"budget {self.daily_budget} USD a day per user (AGENTRY_DEV_DAILY_BUDGET_USD)"
            )
        return install, has_key

    def _start_relay(self, upstream: str) -> None:
        """The dashboard at 127.0.0.1:api_port, relayed to the API's Service in the cluster."""
        relay = Proc(
            "dashboard-relay",
            [
                sys.executable,
                "-m",
                "agentry_localcluster.relay",
                f"--listen=127.0.0.1:{self.api_port}",
                f"--to={upstream}",
            ],
            self.workdir / "relay.log",
        ).start()
        self.procs.append(relay)
        relay.wait_ready(
            lambda: localhttp.get(f"http://127.0.0.1:{self.api_port}/healthz", timeout=2).is_success,
            60,
            f"serving the API's /healthz (through the Service at {upstream})",
        )

    def _say_ready(self, dashboard: str, install: Install, has_key: bool) -> None:
        _say(f"    dashboard:  {dashboard}")
        try:
            link = signed_in_link(dashboard, admin_token(self.workdir))
            _say(f"    signed in:  {link}")
            _say("                (the sample agents' owner; the #token part stays in the browser)")
        except httpx.HTTPError as exc:
            _say(f"    (no signed-in link: the API refused the bootstrap token: {exc})")
        _say(f"    agentry:    .venv/bin/agentry login --url {dashboard.rstrip('/')} --guest   (docs/cli.md)")
        _say(f"    kubectl:    export KUBECONFIG={self.cluster.plane.kubeconfig}")
        _say(f"    run:        kubectl -n {WORKLOADS_NS} create -f manifests/samples/execution.yaml")
        _say(f"    watch:      kubectl -n {WORKLOADS_NS} get executions -w")
        _say(f"    logs:       {self.workdir}/*.log, {self.workdir}/kube/*.log, {self.workdir}/node/*.log")
        if not has_key:
            _say(
                "    no LLM provider configured: runs fail until the Secret llm-keys has a key. Either "
                "restart with ANTHROPIC_API_KEY set (or OPENAI_API_KEY and OPENAI_BASE_URL for an "
                "OpenAI-compatible endpoint such as a local LLM), or set it now:"
            )
            _say(
                f"      kubectl -n {install.secret_namespace} create secret generic llm-keys "
                '--dry-run=client -o yaml --from-literal=anthropic="$ANTHROPIC_API_KEY" | kubectl apply -f -'
            )
            if self.gateway:
                _say(f"      kubectl -n {SYSTEM_NS} rollout restart deployment/agentry-gateway")
        elif not self.providers.anthropic_key:
            _say("    provider: OpenAI-compatible endpoint; the sample agent for it is hello-openai")
        _say(f"{READY_LINE}; `agentry-dev down` from another terminal too.")

    def all_procs(self) -> list[Proc]:
        node_procs = self.cluster.node.procs if self.cluster.node else []
        return [*self.procs, *self.firestore_procs(), *self.cluster.plane.procs, *node_procs]

    def firestore_procs(self) -> list[Proc]:
        return [self.firestore.proc] if self.firestore.proc else []

    def watch(self) -> int:
        """Block until a signal or until a process dies (then report which and why)."""
        while True:
            for p in self.all_procs():
                if not p.alive():
                    _say(f"{p.name} exited unexpectedly; see {p.log}")
                    return 1
            time.sleep(1)

    def down(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()
        self.firestore.stop()
        self.cluster.down()
        _say("stopped every process")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    if args.detach:
        return _detach(args)
    # Explicitly, for every stop signal: started in the background of a non-interactive shell (CI,
    # `nohup make dev &`), SIGINT is inherited as ignored and Python installs no handler of its own.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupt)
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
        # A second Ctrl-C must not leave half the stack running.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stack.down()
    return code


def _detach(args: argparse.Namespace) -> int:
    """Run `up` in its own session, follow its output until it is ready (or fails), then return."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = args.workdir / "up.log"
    argv = [sys.executable, "-m", "agentry_localcluster.cli", "up", f"--workdir={args.workdir}"]
    argv += [f"--api-port={args.api_port}", f"--apiserver-port={args.apiserver_port}"]
    argv += [f"--firestore-port={args.firestore_port}", f"--project={args.project}"]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    shown = 0
    while True:
        text = log.read_text(errors="replace")
        print(text[shown:], end="", flush=True)
        shown = len(text)
        if READY_LINE in text:
            _say(f"running in the background (pid {proc.pid}, log {log}); `agentry-dev down` stops it")
            return 0
        if proc.poll() is not None:
            return proc.returncode or 1
        time.sleep(0.5)


def cmd_down(args: argparse.Namespace) -> int:
    try:
        stopped = stop_running(_say)
    except ServerError as exc:
        _say(f"error: {exc}")
        return 1
    _say("stopped" if stopped else "nothing was running")
    if args.wipe and args.workdir.exists():
        shutil.rmtree(args.workdir)
        _say(f"removed {args.workdir} (cluster state, logs, PKI)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    holder = lock_holder()
    if holder is None:
        _say("not running (`make dev` starts it)")
        leftovers = n.leftovers()
        if leftovers:
            _say("left behind by an earlier run (`agentry-dev down` removes them): " + "; ".join(leftovers))
        return 3
    state = {**read_state(), **holder}
    since = time.time() - float(state.get("started", time.time()))
    who = f"pid {state.get('pid')} ({state.get('owner')})"
    _say(f"running: {who} for {since / 60:.0f} min, state in {state.get('workdir')}")
    kubeconfig = state.get("kubeconfig") or str(Path(str(state.get("workdir"))) / "kube" / "admin.kubeconfig")
    ok = True

    def kubectl(*a: str) -> str:
        r = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", *a], capture_output=True, text=True, timeout=30
        )
        return r.stdout if r.returncode == 0 else f"(kubectl failed: {r.stderr.strip()})"

    if state.get("pid"):
        procs = stack_processes(int(state["pid"]))
        _say(f"memory: {sum(procs.values()) / 1024**2:.0f} MiB RSS in {len(procs)} processes (with pods)")
    print(kubectl("get", "nodes", "-o", "wide").rstrip())
    print(kubectl("get", "pods", "-A", "-o", "wide").rstrip())
    try:
        answer = dns_query(f"kubernetes.default.svc.{n.CLUSTER_DOMAIN}")
        _say(f"cluster DNS {n.CLUSTER_DNS}: kubernetes.default -> {', '.join(answer) or 'NXDOMAIN'}")
        ok = ok and bool(answer)
    except OSError as exc:
        _say(f"cluster DNS {n.CLUSTER_DNS}: no answer ({exc})")
        ok = False
    dashboard = state.get("dashboard")
    if dashboard:
        try:
            healthy = localhttp.get(f"{dashboard}healthz", timeout=3).is_success
        except httpx.HTTPError:
            healthy = False
        _say(f"dashboard {dashboard}: {'healthy' if healthy else 'NOT answering'}")
        ok = ok and healthy
    _say(f"Agentry: kubectl -n {SYSTEM_NS} get pods; agents run in namespace {WORKLOADS_NS}")
    return 0 if ok else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run `agentry doctor` (agentry_cli.doctor) with what the running `up` knows: Service and pod
    addresses, the token keys (from their Secret, for a service token), the Firestore emulator and
    the kubeconfig."""
    state = {**read_state(), **(lock_holder() or {})}
    if not state.get("kubeconfig") or not state.get("firestore"):
        _say("not running (`make dev` starts it)")
        return 3
    kubeconfig = str(state["kubeconfig"])

    def get(*a: str) -> dict[str, Any]:
        r = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "-n", SYSTEM_NS, "get", *a, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return dict(json.loads(r.stdout)) if r.returncode == 0 else {}

    argv = [f"--kubeconfig={kubeconfig}", f"--project={state.get('project', 'agentry-dev')}"]
    gateway = get("service", "agentry-gateway").get("spec", {})
    if gateway:
        argv.append(f"--gateway=http://{gateway['clusterIP']}:{gateway['ports'][0]['port']}")
        keys = get("secret", "agentry-token-keys").get("data") or {}
        if keys:
            ring = Keyring({k: base64.b64decode(v) for k, v in keys.items()}, max(keys))
            argv.append(f"--token={mint_service_token(ring, 'doctor')}")
    else:
        argv.append("--skip=gateway")  # installed with AGENTRY_DEV_GATEWAY=0
    pods = get("pods", "-l", "app.kubernetes.io/component=operator").get("items") or []
    ip = next((p["status"].get("podIP") for p in pods if p["status"].get("podIP")), None)
    argv.append(f"--operator-url=http://{ip or 'operator-pod-not-found'}:{OPERATOR_HEALTH_PORT}/healthz")
    if state.get("dashboard"):
        argv.append(f"--api-url={str(state['dashboard']).rstrip('/')}")
    os.environ["FIRESTORE_EMULATOR_HOST"] = str(state["firestore"])
    return doctor.main(argv)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="agentry-dev",
        description=doc.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    workdir = Path(os.environ.get("AGENTRY_DEV_DIR", REPO / ".dev"))
    up = sub.add_parser("up", help="start the platform; Ctrl-C (or `agentry-dev down`) stops it")
    up.add_argument("--workdir", type=Path, default=workdir)
    up.add_argument("--api-port", type=int, default=int(os.environ.get("AGENTRY_API_PORT", 8000)))
    up.add_argument("--apiserver-port", type=int, default=int(os.environ.get("AGENTRY_APISERVER_PORT", 6443)))
    up.add_argument("--firestore-port", type=int, default=int(os.environ.get("AGENTRY_FIRESTORE_PORT", 8681)))
    up.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", "agentry-dev"))
    up.add_argument("--detach", action="store_true", help="return once ready; keep running in the background")
    down = sub.add_parser("down", help="stop the running platform and clean up the node's host state")
    down.add_argument("--workdir", type=Path, default=workdir)
    down.add_argument("--wipe", action="store_true", help="also delete the state directory (etcd data, logs)")
    sub.add_parser(
        "status", help="what runs and whether it is healthy (exit 0 healthy, 1 unhealthy, 3 stopped)"
    )
    sub.add_parser("doctor", help="check every channel of the running platform (exit 0 all green, 1 red)")
    args = parser.parse_args(argv)
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "doctor": cmd_doctor}
    return handlers[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
