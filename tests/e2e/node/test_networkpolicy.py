"""The local node enforces NetworkPolicy (kube-router's firewall, localcluster/netpol.py).

Two pods of the workspace image in a namespace of their own: a client connects to a server pod's
address. It gets through with no policy, is refused once a default-deny egress policy selects the
client, and gets through again once an allow rule names the server.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.helpers import patient

from .stack import NodeStack

pytestmark = pytest.mark.e2e

PORT = 8080
OTHER_PORT = 8081
# Exits 0 when the TCP handshake completes within 3 s, 1 otherwise (refused, dropped or timed out).
CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
    "except OSError as exc:\n"
    "    print(type(exc).__name__, exc); sys.exit(1)\n"
    "print('connected')\n"
)
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": name,
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "securityContext": RESTRICTED,
                }
            ],
        },
    }


def _policy(name: str, egress: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "podSelector": {"matchLabels": {"app": "client"}},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }


class Pair:
    """A client and a server pod in a namespace of their own."""

    def __init__(self, stack: NodeStack, namespace: str) -> None:
        self.stack, self.namespace = stack, namespace

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = self.stack.cluster.plane.kubectl("-n", self.namespace, *args, input=input, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def server_ip(self) -> str:
        return str(json.loads(self.kubectl("get", "pod", "server", "-o", "json"))["status"]["podIP"])

    def connect(self, port: int = PORT) -> tuple[bool, str]:
        """Whether the client reaches the server's port, and what it printed."""
        result = self.stack.cluster.plane.kubectl(
            "-n", self.namespace, "exec", "client", "--",
            "python", "-c", CONNECT, self.server_ip(), str(port),
            check=False,
        )  # fmt: skip
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    def wait_connect(self, want: bool, timeout: float = 30) -> list[str]:
        """Poll until the connection's outcome is `want` (kube-router applies a policy within a
        second or two of its event); every outcome seen, for the failure message."""
        seen: list[str] = []
        deadline = time.monotonic() + patient(timeout)
        while time.monotonic() < deadline:
            ok, out = self.connect()
            seen.append(f"{'ok' if ok else 'blocked'}: {out}")
            if ok is want:
                return seen
            time.sleep(1)
        outcome = "succeeded" if want else "blocked"
        raise AssertionError(f"connection never {outcome} in {timeout:.0f} s: {seen}")


@pytest.fixture
def pair(node_stack: NodeStack) -> Iterator[Pair]:
    namespace = f"netpol-{uuid.uuid4().hex[:6]}"
    plane = node_stack.cluster.plane
    plane.kubectl("create", "namespace", namespace)
    pair = Pair(node_stack, namespace)
    image = f"agentry/workspace:{node_stack.install.image_tag}"
    try:
        # Two ports: the allow rule opens one of them only.
        http = "python -m http.server --bind 0.0.0.0 --directory /tmp"
        serve = ["sh", "-c", f"{http} {OTHER_PORT} & exec {http} {PORT}"]
        pair.apply(_pod("server", image, serve))
        pair.apply(_pod("client", image, ["python", "-c", "import time; time.sleep(3600)"]))
        pair.kubectl("wait", "--for=condition=Ready", "pod/server", "pod/client", "--timeout=120s")
        yield pair
    finally:
        plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_egress_policy_blocks_then_allow_rule_reopens(pair: Pair) -> None:
    # No policy: the client reaches both of the server's ports.
    pair.wait_connect(True)
    ok, out = pair.connect(OTHER_PORT)
    assert ok, out

    # Default-deny egress for the client: the same connection is blocked.
    pair.apply(_policy("deny-egress", []))
    blocked = pair.wait_connect(False)
    assert "connected" not in blocked[-1], blocked

    # An allow rule for the server's pods on its port: the connection gets through again, while the
    # deny-all policy stays (policies add up).
    to_server = {"to": [{"podSelector": {"matchLabels": {"app": "server"}}}], "ports": [{"port": PORT}]}
    pair.apply(_policy("allow-server", [to_server]))
    reopened = pair.wait_connect(True)
    assert reopened[-1].startswith("ok: connected"), reopened
    names = pair.kubectl("get", "networkpolicy", "-o", "name").split()
    assert sorted(names) == [
        "networkpolicy.networking.k8s.io/allow-server",
        "networkpolicy.networking.k8s.io/deny-egress",
    ]

    # The server's other port stays closed to the client: the allow rule opens exactly what it says.
    ok, out = pair.connect(OTHER_PORT)
    assert not ok and "connected" not in out, out
