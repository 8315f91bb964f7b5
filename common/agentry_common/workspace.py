"""The kept workspace (Agent spec.workspace.persistent): its claim's name and labels, and its size.

The operator keeps one PersistentVolumeClaim per Agent and mounts it at /workspace in every run's pod
(operator builders/workspace.py); the runtime reads the size limit from env (ENV_WORKSPACE_LIMIT) to
hold it where the storage does not (local hostPath-style volumes).
"""

from __future__ import annotations

import re
from typing import Final

from . import constants as c
from .naming import short_hash

# The claim's component label: `kubectl get pvc -l app.kubernetes.io/component=workspace`.
COMPONENT: Final = "workspace"
CLAIM_PREFIX: Final = "agentry-ws-"
_MAX_NAME: Final = 63  # a label-safe name, like the Agent's other children
# The runtime's limit of /workspace in bytes (set only on a kept workspace).
ENV_WORKSPACE_LIMIT: Final = "AGENTRY_WORKSPACE_LIMIT_BYTES"

_SIZE = re.compile(r"^([0-9]+)(Mi|Gi)$")
_UNITS: Final = {"Mi": 1024**2, "Gi": 1024**3}


def claim_name(agent_name: str, agent_uid: str) -> str:
    """The Agent's one claim: from its name and uid, so an Agent re-created under the same name never
    gets its predecessor's claim (still being collected)."""
    suffix = short_hash(agent_uid)
    room = _MAX_NAME - len(CLAIM_PREFIX) - len(suffix) - 1
    return f"{CLAIM_PREFIX}{agent_name[:room].rstrip('-.')}-{suffix}"


def claim_labels(agent_name: str) -> dict[str, str]:
    return {
        c.LABEL_AGENT: agent_name[:63],
        c.LABEL_COMPONENT: COMPONENT,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
    }


def size_bytes(size: str) -> int:
    """Bytes of a spec.workspace.size ("512Mi", "2Gi"); ValueError names the field otherwise."""
    match = _SIZE.match(size)
    if match is None:
        raise ValueError(f"spec.workspace.size: {size!r} is not a size like 512Mi or 2Gi")
    return int(match.group(1)) * _UNITS[match.group(2)]
