"""Cluster DNS: the CoreDNS objects `Cluster.up` applies, and a one-query DNS probe (no dependency:
one UDP packet) to see that they answer."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path
from typing import Any

from .images import coredns_image
from .layout import CLUSTER_DNS, CLUSTER_DOMAIN

NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}
META = {"name": "coredns", "namespace": NAMESPACE}
# CoreDNS serves on 53 inside its pod, as clusters do: NetworkPolicies name the pod's port (after the
# Service's translation), and the chart's DNS rules allow 53. It runs as non-root all the same: the
# pod's namespaced sysctl net.ipv4.ip_unprivileged_port_start (a "safe" sysctl) lets it bind 53.
DNS_PORT = 53


def dns_query(name: str, server: str = CLUSTER_DNS, timeout: float = 2) -> list[str]:
    """A records of name from server; [] when the name does not exist; raises OSError when no answer."""
    qid = random.randint(0, 0xFFFF)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, 53))
        data = s.recv(4096)
    rid, _flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if rid != qid:
        raise OSError("DNS answer for another query")
    pos = 12 + len(question) + 4
    found = []
    for _ in range(ancount):
        if data[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            found.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return found


COREFILE = f""".:{DNS_PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}}
"""


def coredns_manifests() -> list[dict[str, Any]]:
    """Cluster DNS as kubeadm sets it up, on port 53 of a non-root pod (DNS_PORT)."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": META},
        *_coredns_rbac(),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": META, "data": {"Corefile": COREFILE}},
        _coredns_deployment(),
        _coredns_service(),
    ]


def _coredns_rbac() -> list[dict[str, Any]]:
    """CoreDNS watches Services, EndpointSlices, Pods and Namespaces to answer for them."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}],
        },
    ]


def _coredns_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**META, "labels": LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": "coredns",
                    "priorityClassName": "system-cluster-critical",
                    "dnsPolicy": "Default",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": str(DNS_PORT)}],
                    },
                    "containers": [_coredns_container()],
                    "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                },
            },
        },
    }


def _coredns_container() -> dict[str, Any]:
    return {
        "name": "coredns",
        "image": coredns_image(Path("/")).tag,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
    }


def _coredns_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            "clusterIP": CLUSTER_DNS,
            "selector": LABELS,
            "ports": [
                {"name": "dns", "port": 53, "targetPort": DNS_PORT, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "targetPort": DNS_PORT, "protocol": "TCP"},
            ],
        },
    }
