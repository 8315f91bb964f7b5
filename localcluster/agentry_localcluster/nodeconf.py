"""The configuration files of the node's parts: the CNI network, containerd, the kubelet, kube-proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentry_common.pki import CertPair

from . import gvisor
from .layout import (
    BRIDGE,
    CGROUP_ROOT,
    CLUSTER_DNS,
    CLUSTER_DOMAIN,
    CNI_BIN,
    NODE_IP,
    NODE_NAME,
    NODE_ROOT,
    NODE_RUN,
    PAUSE_IMAGE,
    POD_CIDR,
    containerd_socket,
)


def cni_conflist() -> dict[str, Any]:
    """The pod network: one bridge, host-local addresses from POD_CIDR, the node as gateway."""
    return {
        "cniVersion": "1.0.0",
        "name": "agentry",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": False,  # AGENTRY-POSTROUTING masquerades the whole pod network
                "hairpinMode": True,  # a pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "dataDir": str(NODE_ROOT / "cni" / "networks"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def containerd_config(runsc_config: Path | None = None) -> str:
    """containerd's config.toml: its own root, state and socket, CRI with runc and our CNI; with
    `runsc_config` (the shim's runsc.toml), also gVisor's runtime handler (gvisor.py)."""
    root, state = NODE_ROOT / "containerd", NODE_RUN / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{containerd_socket()}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = false
  # Lowering a process' oom_score_adj (the kubelet asks -998 for sandboxes) needs CAP_SYS_RESOURCE,
  # which sandboxed machines (VMs, containers) often drop: cap it at containerd's own value instead.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
{gvisor.containerd_runtime(cri, runsc_config) if runsc_config else ""}  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{NODE_ROOT / "cni" / "net.d"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{NODE_ROOT / "opt"}"
"""


# What one pod may take of the shared node (docs/dev-cluster.md, "Bounded pods"):
RUN_POD_BOUNDS: dict[str, Any] = {
    # Tasks (processes and threads) per pod: a run needs a few dozen (the runtime, a tool, the claude
    # CLI, stdio MCP servers, a numpy's threads); a fork bomb stops here, at 1/64 of this machine's
    # pid_max (32768), instead of taking every PID of the host.
    "podPidsLimit": 512,
    # Each container's log: rotated at 10 MiB, 3 files kept (the kubelet checks every 10 s).
    "containerLogMaxSize": "10Mi",
    "containerLogMaxFiles": 3,
    # ephemeral-storage limits and emptyDir sizeLimits are enforced by eviction (the default, said
    # here); the emptyDirs' usage is measured every 10 s instead of every minute, so a run over its
    # limit is evicted within about 20 s rather than up to 70.
    "localStorageCapacityIsolation": True,
    "volumeStatsAggPeriod": "10s",
}


def kubelet_config(port: int, serving: CertPair, client_ca: Path) -> dict[str, Any]:
    """The KubeletConfiguration: serving on NODE_IP:port, webhook auth, our cgroup root and directories."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 0,  # no healthz server (nothing reads it): no port to race for
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{containerd_socket()}",
        "cgroupDriver": "cgroupfs",  # containerd's runc uses cgroupfs (SystemdCgroup = false)
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(NODE_ROOT / "pod-logs"),
        "volumePluginDir": str(NODE_ROOT / "volume-plugins"),
        "rotateCertificates": False,
        "serializeImagePulls": False,
        # A shared development machine: never evict pods or delete the imported images because
        # the disk is fuller than a production node would like (preflight checks free space).
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 110,
        **RUN_POD_BOUNDS,
        "shutdownGracePeriod": "0s",
        "logging": {"verbosity": 1},
    }


def kube_proxy_config(kubeconfig: Path, healthz: int, metrics: int) -> dict[str, Any]:
    """The KubeProxyConfiguration: iptables mode, bound to the node's address, the machine's
    conntrack sysctls left alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Leave the machine's conntrack sysctls and route_localnet alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False},
        "logging": {"verbosity": 1},
    }
