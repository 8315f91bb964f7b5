"""Where the local node lives on this machine: its directories, names and addresses.

Everything the node creates on the host is namespaced by these so it can be found and removed again
(see node.py for the table).
"""

from __future__ import annotations

import os
from pathlib import Path

from .paths import node_root

NODE_ROOT = node_root()
NODE_RUN = Path(os.environ.get("AGENTRY_NODE_RUN", "/run/agentry-node"))
NODE_NAME = "agentry-node"
BRIDGE = "agentry0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"  # the bridge's address: pods' gateway, and where host services are reachable
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN = Path("/usr/lib/cni")
PAUSE_IMAGE = "docker.io/agentry/pause:3.10"
CGROUP_ROOT = "agentry"
CHAIN_PREFIX = "AGENTRY-"
MIN_FREE_BYTES = 5 * 1024**3
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "crictl", "coredns", "pause", "kube-router")


def containerd_socket() -> Path:
    return NODE_RUN / "containerd" / "containerd.sock"
