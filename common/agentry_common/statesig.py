"""The integrity of a paused run's state (the runtime ↔ operator contract of approvals).

A run that stops for an approval prints its conversation state in the `approval_request` event on its
log, and the operator keeps that state for the resumed run. Any process in the pod could print a line
that looks the same, so the runtime signs the state with a per-run key (`ENV_STATE_KEY`, from the run's
Secret, which its tools never see) and the operator keeps only a state whose signature verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final

ENV_STATE_KEY: Final = "AGENTRY_STATE_KEY"
SECRET_STATE_KEY: Final = "state-key"  # its entry in the run's Secret (beside the run token)
SIGNATURE_FIELD: Final = "stateSignature"  # in the approval_request event


def _canonical(state: Any) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_state(key: str, state: Any) -> str:
    """HMAC-SHA256 of the state's canonical JSON, hex."""
    return hmac.new(key.encode(), _canonical(state), hashlib.sha256).hexdigest()


def state_verifies(key: str, state: Any, signature: object) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign_state(key, state), signature)
