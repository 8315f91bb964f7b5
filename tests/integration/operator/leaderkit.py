"""What the leader-election tests share: who holds the operator's Lease, and killing that replica
(SIGKILL, as a lost node would) until the other one takes over."""

from __future__ import annotations

import os
import signal
import time

from lightkube import ApiError, Client
from lightkube.resources.coordination_v1 import Lease

from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess

LEASE = "agentry-operator"


def holder(client: Client, ns: str) -> str | None:
    try:
        lease = client.get(Lease, LEASE, namespace=ns)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    return lease.spec.holderIdentity if lease.spec else None


def replica_of(identity: str | None, replicas: dict[str, OperatorProcess]) -> str | None:
    return next((name for name in replicas if identity and identity.startswith(name + "_")), None)


def revive(replicas: dict[str, OperatorProcess]) -> None:
    """Start again a replica that exited, as its pod's kubelet would: a leader that cannot renew its
    Lease in time (a starved machine) stops and exits 1 by design, to come back as a candidate."""
    for name, replica in replicas.items():
        code = replica.proc.popen.poll() if replica.proc.popen is not None else None
        if code is not None:
            print(f"{name} exited {code} by itself: restarted")
            replica.proc.start()


def kill_leader(client: Client, ns: str, replicas: dict[str, OperatorProcess]) -> float:
    """SIGKILL the Lease holder; wait for the other replica to hold it; start the killed one again as
    a candidate. Returns the seconds from the kill to the new holder."""
    revive(replicas)
    leader = eventually(lambda: replica_of(holder(client, ns), replicas), 60, "a leader")
    proc = replicas[leader].proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.popen.wait(10)  # type: ignore[union-attr]
    killed = time.monotonic()

    def successor_of() -> str | None:
        revive({name: r for name, r in replicas.items() if name != leader})
        r = replica_of(holder(client, ns), replicas)
        return r if r not in (None, leader) else None

    successor = eventually(
        successor_of,
        60,
        f"a successor to {leader}",
    )
    took = time.monotonic() - killed
    print(f"leader {leader} killed: {successor} took over after {took:.1f} s")
    proc.start()
    replicas[leader].wait_healthy()
    return took
