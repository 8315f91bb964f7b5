"""Contracts of the Trigger custom resource (docs/events.md, "Events in: triggers").

A Trigger gives an Agent or a Workflow a URL on the API (`/hooks/<name>`). A request to it
whose HMAC-SHA256 signature verifies with the key in the trigger's Secret starts one run, owned by the
trigger's owner. The signing rules live here, pure, so that the API's receiver, `agentry triggers test`
and the benchmark sign and verify the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from pydantic import Field, model_validator

from .models import Condition, CRModel
from .naming import short_hash

TRIGGER_KIND: Final = "Trigger"
TRIGGER_PLURAL: Final = "triggers"
HOOKS_PREFIX: Final = "/hooks"
DEFAULT_SECRET_KEY: Final = "key"  # the Secret's data key the API writes (spec.secretRef.key)
DEFAULT_MAX_BODY: Final = 1024 * 1024
DEFAULT_TOLERANCE: Final = 300
MAX_INPUT_CHARS: Final = 32 * 1024  # a mapped input longer than this is cut
MAX_PARAMETER_CHARS: Final = 4 * 1024

# GitHub's headers (https://docs.github.com/webhooks): the signature covers the body only.
HEADER_GITHUB_SIGNATURE: Final = "x-hub-signature-256"
HEADER_GITHUB_DELIVERY: Final = "x-github-delivery"
HEADER_GITHUB_EVENT: Final = "x-github-event"
# The Generic scheme uses the Standard Webhooks headers (https://www.standardwebhooks.com): the
# signature covers `<id>.<timestamp>.<body>`, so neither the id nor the time can be changed.
HEADER_ID: Final = "webhook-id"
HEADER_TIMESTAMP: Final = "webhook-timestamp"
HEADER_SIGNATURE: Final = "webhook-signature"
# The runtime frames the input of a run whose Execution says this as untrusted external data.
ENV_INPUT_UNTRUSTED: Final = "AGENTRY_INPUT_UNTRUSTED"


class Scheme(StrEnum):
    GITHUB = "GitHub"
    GENERIC = "Generic"


class Outcome(StrEnum):
    """What became of one delivery (the dashboard's column)."""

    ACCEPTED = "Accepted"
    DUPLICATE = "Duplicate"
    REFUSED = "Refused"


class Refusal(StrEnum):
    """Why a delivery started nothing (its record's `reason`, and the 4xx answer's `reason`)."""

    SIGNATURE_MISSING = "SignatureMissing"
    SIGNATURE_INVALID = "SignatureInvalid"
    TIMESTAMP_STALE = "TimestampStale"
    DELIVERY_ID_MISSING = "DeliveryIdMissing"
    TOO_LARGE = "TooLarge"
    RATE_LIMITED = "RateLimited"
    SUSPENDED = "Suspended"
    NOT_READY = "NotReady"
    INVALID_PAYLOAD = "InvalidPayload"
    RUN_REFUSED = "RunRefused"


class ReadyReason(StrEnum):
    """The Ready condition's reasons."""

    READY = "Ready"
    SECRET_MISSING = "SecretMissing"
    TARGET_MISSING = "TargetMissing"
    INVALID_MAPPING = "InvalidMapping"
    SUSPENDED = "Suspended"


class NameRef(CRModel):
    name: str = Field(min_length=1, max_length=253)


class SecretKeyRef(CRModel):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default=DEFAULT_SECRET_KEY, min_length=1, max_length=253)


class Signature(CRModel):
    scheme: Scheme = Scheme.GITHUB
    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE, ge=10, le=3600)


class Rate(CRModel):
    per_minute: int = Field(default=60, ge=1, le=6000)
    burst: int = Field(default=10, ge=1, le=1000)


class MappingSpec(CRModel):
    input: str | None = Field(default=None, max_length=4096)
    parameters: dict[str, str] = Field(default_factory=dict)


class TriggerSpec(CRModel):
    agent_ref: NameRef | None = None
    workflow_ref: NameRef | None = None
    secret_ref: SecretKeyRef
    signature: Signature = Field(default_factory=Signature)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, ge=1024, le=16 * 1024 * 1024)
    rate: Rate = Field(default_factory=Rate)
    mapping: MappingSpec = Field(default_factory=MappingSpec)
    suspend: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> TriggerSpec:
        if (self.agent_ref is None) == (self.workflow_ref is None):
            raise ValueError("exactly one of agentRef and workflowRef")
        return self

    @property
    def target(self) -> tuple[str, str]:
        """("Agent" | "Workflow", name)."""
        if self.agent_ref is not None:
            return "Agent", self.agent_ref.name
        assert self.workflow_ref is not None
        return "Workflow", self.workflow_ref.name


class LastDelivery(CRModel):
    time: str
    outcome: Outcome
    reason: str = ""
    run: str = ""


class TriggerStatus(CRModel):
    url: str = ""
    conditions: list[Condition] = Field(default_factory=list)
    last_delivery: LastDelivery | None = None
    observed_generation: int | None = None


def hook_path(name: str) -> str:
    """The trigger's path under the API's public base URL (the API serves one namespace)."""
    return f"{HOOKS_PREFIX}/{name}"


def run_name(trigger: str, uid: str, delivery_key: str) -> str:
    """The run one delivery starts: the same trigger and delivery always give the same name, so two
    concurrent copies of a delivery meet the API server's 409 instead of starting a second run."""
    return f"{trigger[:40].rstrip('-.')}-{short_hash(f'{uid}/{delivery_key}', 16)}"


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def sign_github(key: bytes, body: bytes) -> dict[str, str]:
    """The signature header of a GitHub-style delivery."""
    return {HEADER_GITHUB_SIGNATURE: "sha256=" + _mac(key, body).hex()}


def sign_generic(key: bytes, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a Generic (Standard Webhooks) delivery."""
    mac = _mac(key, f"{delivery_id}.{timestamp}.".encode() + body)
    return {
        HEADER_ID: delivery_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: "v1," + base64.b64encode(mac).decode(),
    }


def verify_github(key: bytes, body: bytes, headers: Mapping[str, str]) -> tuple[Refusal | None, str]:
    """(None, delivery key) when the signature verifies, else (why, ""). GitHub's signature does not
    cover X-GitHub-Delivery, so a delivery is known by its body's digest: a replay under a made-up
    delivery id is still the same delivery."""
    given = headers.get(HEADER_GITHUB_SIGNATURE, "")
    if not given:
        return Refusal.SIGNATURE_MISSING, ""
    expected = "sha256=" + _mac(key, body).hex()
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return Refusal.SIGNATURE_INVALID, ""
    return None, "sha256:" + body_digest(body)


def verify_generic(
    key: bytes, body: bytes, headers: Mapping[str, str], now: float, tolerance: int
) -> tuple[Refusal | None, str]:
    """(None, delivery key: the webhook-id) when one of the v1 signatures verifies and the timestamp is
    within `tolerance` seconds of `now`, else (why, "")."""
    delivery_id, stamp, given = (headers.get(h, "") for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE))
    if not given:
        return Refusal.SIGNATURE_MISSING, ""
    if not delivery_id or len(delivery_id) > 200:
        return Refusal.DELIVERY_ID_MISSING, ""
    try:
        timestamp = int(stamp)
    except ValueError:
        return Refusal.TIMESTAMP_STALE, ""
    if abs(now - timestamp) > tolerance:
        return Refusal.TIMESTAMP_STALE, ""
    expected = base64.b64encode(_mac(key, f"{delivery_id}.{timestamp}.".encode() + body))
    found = False
    for part in given.split()[:8]:  # senders may list several (a key being rotated)
        version, _, value = part.partition(",")
        found |= version == "v1" and hmac.compare_digest(value.encode(), expected)
    return (None, "id:" + delivery_id) if found else (Refusal.SIGNATURE_INVALID, "")
