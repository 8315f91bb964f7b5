"""A real local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

The envtest idea in Python. Binaries come from KUBEBUILDER_ASSETS when it points at them, otherwise
from hack/provision-kube.sh, which builds them from the Go module proxy once and caches them by version.
The controller-manager runs the real controllers (Job, CronJob, garbage collector, namespace,
service account), so Jobs get Pods and owners' children are collected.

By default there is no kubelet: Pods stay Pending unless a test writes their status as a kubelet would.
With `node_ip` set (the local node of `cluster.py`), the API server also listens on that address (pods
reach it through the `kubernetes` Service, whose endpoint is the advertise address), can call the
kubelet (logs, exec) with a client certificate, and a kube-scheduler binds Pods to the node.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from agentry_common.pki import LocalPKI

from . import localhttp
from .procs import (
    Proc,
    ServerError,
    require_free_port,
    start_with_ports,
)

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "hack" / "provision-kube.sh"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_CIDR = "10.96.0.0/16"
# The first address of SERVICE_CIDR: the ClusterIP of the `kubernetes` Service.
KUBERNETES_SERVICE_IP = "10.96.0.1"


def provision(components: tuple[str, ...] = (*CONTROL_PLANE, "helm")) -> Path:
    """Directory holding the binaries: KUBEBUILDER_ASSETS if complete, else build/cached ones."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        missing = [c for c in components if not (Path(assets) / c).exists()]
        if not missing:
            return Path(assets)
        print(
            f"[agentry] KUBEBUILDER_ASSETS={assets} lacks {', '.join(missing)}; provisioning those",
            file=sys.stderr,
        )
    if shutil.which("go") is None:
        raise ServerError(
            "no Kubernetes binaries: set KUBEBUILDER_ASSETS to a directory with "
            f"{', '.join(components)}, or install Go so hack/provision-kube.sh can build them."
        )
    # Progress goes straight to the terminal (stderr); the last stdout line is the directory.
    result = subprocess.run(
        ["bash", str(PROVISION), *components], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise ServerError(f"hack/provision-kube.sh failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


# The names in the API server's serving certificate: in-cluster clients use the Service's.
APISERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def _apiserver_fixed_flags(sa_key: Path) -> list[str]:
    """The API server's flags that name no port, address or serving certificate."""
    return [
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=PodSecurity",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={sa_key}",
        f"--service-account-signing-key-file={sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--profiling=false",
        "--max-requests-inflight=1000",
        "--max-mutating-requests-inflight=500",
    ]


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class ControlPlane:
    workdir: Path
    assets: Path | None = None
    apiserver_port: int = 0
    # The node's address (pods reach the API server there); None: control plane only, loopback only.
    node_ip: str | None = None
    procs: list[Proc] = field(default_factory=list, repr=False)

    @property
    def advertise_address(self) -> str:
        return self.node_ip or "127.0.0.1"

    @property
    def pki(self) -> LocalPKI:
        return LocalPKI(self.workdir / "pki")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def start(self, timeout: float = 120) -> ControlPlane:
        assets = self.assets or provision()
        self.assets = assets
        self.workdir.mkdir(parents=True, exist_ok=True)
        bind = "0.0.0.0" if self.node_ip else "127.0.0.1"
        self._check_fixed_port(bind)
        # etcd first, on two quiet ports (client, peer), started again on others if one is taken;
        # its URL is final before kube-apiserver (which gets it on its command line) starts.
        etcd_url = start_with_ports("etcd", 2, lambda ports: self._start_etcd(assets, ports), host=bind)
        kcm_kubeconfig = self.workdir / "kcm.kubeconfig"
        self._start_apiserver(assets, etcd_url, bind, kcm_kubeconfig, timeout)
        self._start_controller_manager(assets, kcm_kubeconfig, timeout)
        if self.node_ip:
            self._start_scheduler(assets, self.pki, timeout)
        return self

    def _check_fixed_port(self, bind: str) -> None:
        """A port the user chose (`make dev`) must be free, on every address when we bind them all."""
        port = self.apiserver_port
        if not port:
            return
        require_free_port(port, "kube-apiserver", "AGENTRY_APISERVER_PORT", anywhere=bind == "0.0.0.0")

    def _start_apiserver(
        self, assets: Path, etcd_url: str, bind: str, kcm_kubeconfig: Path, timeout: float
    ) -> None:
        pki = self.pki
        admin = pki.issue("admin", "agentry-admin", org="system:masters", client=True)
        kcm = pki.issue("kcm", "system:kube-controller-manager", client=True)
        node_flags = self._kubelet_client_flags() if self.node_ip else []

        def apiserver_on(ports: tuple[int, ...]) -> None:
            # Everything naming the port (serving certificate, kubeconfigs) is made per attempt.
            (self.apiserver_port,) = ports
            serving = pki.issue(
                f"apiserver-{self.apiserver_port}-{self.advertise_address}",
                "kube-apiserver",
                dns=APISERVER_NAMES,
                ips=tuple(dict.fromkeys(("127.0.0.1", KUBERNETES_SERVICE_IP, self.advertise_address))),
                server=True,
            )
            self._write_kubeconfig(self.kubeconfig, pki.ca.cert, admin.cert, admin.key)
            self._write_kubeconfig(kcm_kubeconfig, pki.ca.cert, kcm.cert, kcm.key)
            argv = [
                str(assets / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={bind}",
                f"--secure-port={self.apiserver_port}",
                f"--advertise-address={self.advertise_address}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                *_apiserver_fixed_flags(pki.service_account_key()),
                *node_flags,
                "--v=1",
            ]
            apiserver = Proc("kube-apiserver", argv, self.workdir / "kube-apiserver.log").start()
            apiserver.wait_ready(self._ready, timeout, "ready (/readyz)", ports=ports)
            self.procs.append(apiserver)

        if self.apiserver_port:  # the user's port (`make dev`): one attempt, a clear error if it is taken
            apiserver_on((self.apiserver_port,))
        else:
            start_with_ports("kube-apiserver", 1, apiserver_on, host=bind)

    def _kubelet_client_flags(self) -> list[str]:
        """The API server calls the kubelet (logs, exec, port-forward) as a cluster admin and
        checks the kubelet's serving certificate against our CA."""
        pki = self.pki
        kubelet_client = pki.issue(
            "apiserver-kubelet-client",
            "system:kube-apiserver-kubelet-client",
            org="system:masters",
            client=True,
        )
        return [
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            f"--kubelet-certificate-authority={pki.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def _start_controller_manager(self, assets: Path, kubeconfig: Path, timeout: float) -> None:
        pki = self.pki
        controller_manager = Proc(
            "kube-controller-manager",
            [
                str(assets / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                # No HTTPS endpoint (and no port): readiness is the controllers' work below.
                "--secure-port=0",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key()}",
                f"--root-ca-file={pki.ca.cert}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-job-syncs=10",
                "--v=1",
            ],
            self.workdir / "kube-controller-manager.log",
        ).start()
        self.procs.append(controller_manager)
        # The service-account controller creating `default` proves the controller-manager works.
        controller_manager.wait_ready(
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default").is_success,
            timeout,
            "running controllers (default ServiceAccount created)",
        )

    def _start_etcd(self, assets: Path, ports: tuple[int, ...]) -> str:
        client_port, peer_port = ports
        etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = Proc(
            "etcd",
            [
                str(assets / "etcd"),
                "--name=agentry",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=agentry={peer_url}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        ).start()
        etcd.wait_ready(
            lambda: localhttp.get(etcd_url + "/health", timeout=1).is_success, 30, "healthy", ports=ports
        )
        self.procs.append(etcd)  # only once ready: a failed attempt stopped itself
        return etcd_url

    def _start_scheduler(self, assets: Path, pki: LocalPKI, timeout: float) -> None:
        cert = pki.issue("scheduler", "system:kube-scheduler", client=True)
        kubeconfig = self.workdir / "scheduler.kubeconfig"
        self._write_kubeconfig(kubeconfig, pki.ca.cert, cert.cert, cert.key)

        def on(ports: tuple[int, ...]) -> None:
            (port,) = ports
            scheduler = Proc(
                "kube-scheduler",
                [
                    str(assets / "kube-scheduler"),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={port}",
                    "--leader-elect=false",
                    "--v=1",
                ],
                self.workdir / "kube-scheduler.log",
            ).start()
            scheduler.wait_ready(
                lambda: (
                    localhttp.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=1).is_success
                ),
                timeout,
                "healthy (/healthz)",
                ports=ports,
            )
            self.procs.append(scheduler)

        start_with_ports("kube-scheduler", 1, on, host="127.0.0.1")

    def client_kubeconfig(self, name: str, cn: str, org: str | None = None) -> Path:
        """A kubeconfig with a client certificate of our CA (for the kubelet, kube-proxy, ...)."""
        pki = self.pki
        cert = pki.issue(name, cn, org=org, client=True)
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, pki.ca.cert, cert.cert, cert.key)
        return path

    def http(self) -> httpx.Client:
        """A client of the API server as its admin (the caller closes it)."""
        return self._client()

    def _client(self) -> httpx.Client:
        pki = self.workdir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return httpx.Client(base_url=self.server, verify=ctx, timeout=5)

    def _get(self, path: str) -> httpx.Response:
        with self._client() as c:
            return c.get(path)

    def _ready(self) -> bool:
        return self._get("/readyz").is_success

    def _write_kubeconfig(self, path: Path, ca: Path, cert: Path, key: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "agentry",
                    "cluster": {"server": self.server, "certificate-authority-data": _b64(ca)},
                }
            ],
            "users": [
                {
                    "name": "agentry",
                    "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)},
                }
            ],
            "contexts": [
                {
                    "name": "agentry",
                    "context": {"cluster": "agentry", "user": "agentry", "namespace": "default"},
                }
            ],
            "current-context": "agentry",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    def env(self) -> dict[str, str]:
        assert self.assets is not None
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.assets}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def wait_gone(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while any(p.alive() for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.1)
