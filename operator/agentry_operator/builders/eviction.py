"""A run pod the kubelet evicted for its own storage: an emptyDir over its sizeLimit, or the container
(or the pod) over its ephemeral-storage limit. Such an eviction carries no DisruptionTarget condition
(unlike node pressure), so the Job counts it as a failed attempt, and its exit code misleads: the
kubelet stops the pod with a 1 s grace, so the runtime reports a SIGTERM stop (13, DeadlineExceeded)
or is killed (137, read as OOMKilled)."""

from __future__ import annotations

from .kinds import Pod

POD_EVICTED = "Evicted"
# How the kubelet words these evictions (pkg/kubelet/eviction/eviction_manager.go); node-pressure
# evictions ("The node was low on resource: ephemeral-storage") are not the run's doing.
STORAGE_EVICTION_WORDS = ("Usage of EmptyDir volume", "local ephemeral storage", "ephemeral local storage")


def storage_eviction(pod: Pod | None) -> str | None:
    """The kubelet's message when it evicted the pod for exceeding its own storage limits, else None."""
    status = (pod or {}).get("status") or {}
    message = str(status.get("message") or "").strip().rstrip(".")
    if status.get("reason") == POD_EVICTED and any(w in message for w in STORAGE_EVICTION_WORDS):
        return message
    return None


def storage_message(evicted: str, attempts: int) -> str:
    text = (
        f"the run wrote more local storage than it may and the kubelet evicted its pod ({evicted}): "
        "/workspace and /tmp are bounded (emptyDir sizeLimit), and so is the container (ephemeral-storage)"
    )
    if attempts > 1:
        text = f"{text}; gave up after {attempts} attempt(s) (spec.retries)"
    return text
