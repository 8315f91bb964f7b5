"""The operator's Kubernetes client: lightkube's AsyncClient for everything, and beside it, on the same
connections, the hot path's requests (wire.py) and the informer's watches (informer.py).

lightkube instead of the official `kubernetes` client: same API server, a fraction of the import
weight. Its configuration (kubeconfig or in-cluster) and authentication serve every request: the
hot path and the watches carry the Authorization header lightkube's auth flow last put on a
request (transport.Credentials).
"""

from __future__ import annotations

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.config.client_adapter import verify_cluster

from . import gate
from .transport import AiohttpTransport
from .wire import Wire

FIELD_MANAGER = "agentry-operator"

# A request waits for a free connection as long as it takes (lightkube's default gives up after 10 s):
# thousands of runs started at once would queue past that and each fail into a retry back-off.
TIMEOUT = httpx2.Timeout(10.0, pool=None)


class Client(AsyncClient):
    """lightkube's client, and beside it the hot path's requests on the same connections (wire.py)."""

    wire: Wire


def new_client() -> Client:
    """The operator's client: lightkube's own configuration (kubeconfig or in-cluster), through a
    transport that bounds the requests in flight (gate.py) and sends them with aiohttp (transport.py)."""
    config = KubeConfig.from_env().get()
    if config is None or config.user is None:
        raise RuntimeError("the Kubernetes configuration has no current context with a user")
    verify = verify_cluster(config.cluster, config.user, config.abs_file, trust_env=True)
    sender = AiohttpTransport(verify, limit=gate.LIMIT)
    gated = gate.GatedTransport(sender)
    client = Client(config, field_manager=FIELD_MANAGER, timeout=TIMEOUT, transport=gated)
    client.wire = Wire(config.cluster.server, sender, FIELD_MANAGER, TIMEOUT, gated.slots)
    return client
