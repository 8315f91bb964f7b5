"""The warm pool's contracts (docs/runs.md, "Warm pool"): the operator's pool profiles, the labels of a
warm Job, and the claim channel between the operator and one warm pod.

A warm pod is a Job's pod running `python -m agentry_workspace --warm`: it holds no run or user data
until claimed. The operator claims it by POSTing the run's environment and input files to the pod's
claim port, sealed with AES-GCM under a key that only that pod (its own Secret, mounted in it alone)
and the operator hold. The pod accepts one claim; the same claim again is acknowledged, another refused.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field

from .constants import ANNOTATION_EXECUTION, GROUP
from .policy import parse_quantity

LABEL_POOL: Final = f"{GROUP}/pool"  # a warm Job and its pod: the name of its pool (profile)
WARM_FLAG: Final = "--warm"  # `python -m agentry_workspace --warm`
CLAIM_PORT: Final = 8470  # the warm pod's claim port (the NetworkPolicy opens it to the operator only)
CLAIM_PATH: Final = "/claim"
ENV_CLAIM_PORT: Final = "AGENTRY_CLAIM_PORT"
ENV_CLAIM_KEY_FILE: Final = "AGENTRY_CLAIM_KEY_FILE"
KEY_DIR: Final = "/var/run/agentry-claim"  # the pod's own claim Secret, mounted read-only
KEY_FILE: Final = "key"  # key of the claim Secret: 32 random bytes, hex
CLAIM_SECRET_SUFFIX: Final = "-claim"
NONCE_BYTES: Final = 12


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class PoolProfile(BaseModel):
    """One pool (the chart's `operator.pools[]`): warm pods of one run profile (image, resources,
    runtime class) in each of `namespaces`. `resources` unset: the operator's run defaults (an Agent
    that sets none matches); `image` unset: the workspace image."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$")
    namespaces: tuple[str, ...] = Field(min_length=1)
    min: int = Field(default=0, ge=0, le=100, description="Warm pods kept while the pool is idle.")
    max: int = Field(default=2, ge=1, le=100, description="Warm pods kept while runs claim them.")
    idle_seconds: int = Field(default=600, ge=10, alias="idleSeconds")
    image: str | None = None
    resources: Resources | None = None
    runtime_class_name: str | None = Field(default=None, alias="runtimeClassName")


class ClaimRequest(BaseModel):
    """What the operator delivers at claim (sealed): the run's environment and its input files."""

    model_config = ConfigDict(extra="forbid")

    claim: str  # the Execution's uid: one run per pod, a repeat of it is acknowledged
    execution: str
    env: dict[str, str]
    files: dict[str, str]  # file name (agent.json, input.txt) -> content


class ClaimAnswer(BaseModel):
    """The pod's answer (sealed too: only the pod could have written it)."""

    model_config = ConfigDict(extra="forbid")

    claim: str
    accepted: bool
    repeat: bool = False
    message: str = ""


class SealError(ValueError):
    """A sealed message that does not open under the key (wrong key, altered or truncated)."""


def new_key() -> str:
    return AESGCM.generate_key(bit_length=256).hex()


def seal(key_hex: str, payload: bytes, aad: bytes) -> bytes:
    """nonce || AES-256-GCM(payload), authenticated with `aad` (the message's direction)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(bytes.fromhex(key_hex)).encrypt(nonce, payload, aad)


def unseal(key_hex: str, blob: bytes, aad: bytes) -> bytes:
    if len(blob) <= NONCE_BYTES:
        raise SealError("sealed message too short")
    try:
        return AESGCM(bytes.fromhex(key_hex)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise SealError("sealed message does not open under the claim key") from exc


AAD_REQUEST: Final = b"agentry-claim-request"
AAD_ANSWER: Final = b"agentry-claim-answer"


def seal_request(key_hex: str, request: ClaimRequest) -> bytes:
    return seal(key_hex, request.model_dump_json().encode(), AAD_REQUEST)


def open_request(key_hex: str, blob: bytes) -> ClaimRequest:
    return ClaimRequest.model_validate(json.loads(unseal(key_hex, blob, AAD_REQUEST)))


def seal_answer(key_hex: str, answer: ClaimAnswer) -> bytes:
    return seal(key_hex, answer.model_dump_json().encode(), AAD_ANSWER)


def open_answer(key_hex: str, blob: bytes) -> ClaimAnswer:
    return ClaimAnswer.model_validate(json.loads(unseal(key_hex, blob, AAD_ANSWER)))


def claim_secret_name(job: str) -> str:
    return f"{job}{CLAIM_SECRET_SUFFIX}"


__all__ = [
    "CLAIM_PATH",
    "CLAIM_PORT",
    "LABEL_POOL",
    "WARM_FLAG",
    "ClaimAnswer",
    "ClaimRequest",
    "IdleCost",
    "PoolProfile",
    "SealError",
    "idle_cost",
    "new_key",
    "open_answer",
    "open_request",
    "seal_answer",
    "seal_request",
]


@dataclass(frozen=True)
class IdleCost:
    """What the warm pools hold while they wait: their unclaimed pods and those pods' memory requests
    (`agentry doctor` and the dashboard report it)."""

    pods: int = 0
    memory_bytes: int = 0
    per_pool: tuple[tuple[str, int], ...] = ()  # ("namespace/pool", warm pods)

    def describe(self) -> str:
        if not self.pods:
            return "no warm pods (no pool, or every pool scaled to zero)"
        pools = ", ".join(f"{name}: {count}" for name, count in self.per_pool)
        each = self.memory_bytes / self.pods / 2**20
        return (
            f"{self.pods} warm pod{'s' if self.pods != 1 else ''} waiting ({pools}), "
            f"{self.memory_bytes / 2**20:.0f} MiB of memory requested ({each:.0f} MiB each)"
        )


def idle_cost(pods: Iterable[Mapping[str, object]]) -> IdleCost:
    """The idle cost of the warm pods among `pods` (Pod objects as JSON): those of a pool, not claimed,
    not ended."""
    count, memory, per_pool = 0, 0, Counter[str]()
    for pod in pods:
        meta = pod.get("metadata")
        status = pod.get("status")
        spec = pod.get("spec")
        if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
            continue
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        phase = status.get("phase") if isinstance(status, Mapping) else None
        if LABEL_POOL not in labels or ANNOTATION_EXECUTION in notes or phase not in ("Pending", "Running"):
            continue
        count += 1
        per_pool[f"{meta.get('namespace')}/{labels[LABEL_POOL]}"] += 1
        for box in spec.get("containers") or []:
            asked = ((box.get("resources") or {}).get("requests") or {}).get("memory")
            with contextlib.suppress(ValueError, TypeError):
                memory += int(parse_quantity(str(asked))) if asked else 0
    return IdleCost(count, memory, tuple(sorted(per_pool.items())))
