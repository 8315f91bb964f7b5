"""Where the one-time builds and the local node's state live: one variable moves all of it.

`AGENTRY_CACHE_DIR` (default `~/.cache/agentry`; `AGENTRY_CACHE` is read when it is unset) holds the
Kubernetes binaries, wheels, image hashes, our dockerd's data root (hack/cache-env.sh) and the local
node's containerd and kubelet state (`node/`). Pointing it at an empty directory reruns the cold path
on a warm machine; the build scripts read the same variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    raw = os.environ.get("AGENTRY_CACHE_DIR") or os.environ.get("AGENTRY_CACHE")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "agentry"


def node_root() -> Path:
    """The node's persistent state (containerd's images, kubelet); AGENTRY_NODE_ROOT overrides."""
    return Path(os.environ.get("AGENTRY_NODE_ROOT") or cache_dir() / "node")
