"""The gateway's process settings, from the environment (pydantic-settings). One documented class.

Every field reads `AGENTRY_GATEWAY_<NAME>` except where an alias says otherwise (the token keys and
the Google project keep the names the other components read). `get_settings()` is cached; tests build
a `Settings(...)` and pass it to `create_app(settings)`. The governance policy (channels, routes,
budgets) is the file `config_file` names (`config.GatewayConfig`).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentry_common.governance import ADMIN_REFRESH_SECONDS
from agentry_common.tokens import Keyring

from .checkpoints.store import RETENTION_DAYS
from .ledger.pods import GONE_AFTER_SECONDS


class Settings(BaseSettings):
    """Process settings (AGENTRY_GATEWAY_<NAME>); the governance policy lives in `config_file`."""

    model_config = SettingsConfigDict(env_prefix="AGENTRY_GATEWAY_", extra="ignore", populate_by_name=True)

    config_file: str | None = Field(default=None, description="YAML governance file; unset: from env.")
    # Token keys: a mounted Secret directory (one file per key id), or kid:secret pairs (dev).
    token_keys_dir: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTRY_TOKEN_KEYS_DIR", "AGENTRY_GATEWAY_TOKEN_KEYS_DIR"),
    )
    token_keys: str | None = Field(
        default=None, validation_alias=AliasChoices("AGENTRY_TOKEN_KEYS", "AGENTRY_GATEWAY_TOKEN_KEYS")
    )
    token_kid: str | None = Field(
        default=None, validation_alias=AliasChoices("AGENTRY_TOKEN_KID", "AGENTRY_GATEWAY_TOKEN_KID")
    )
    # Where budget counters and call records live: "firestore", or "memory" (one process, dev/bench).
    ledger: str = Field(default="firestore", pattern="^(firestore|memory)$")
    # How often admin-set policies and throttles are read again (Firestore ledger only; 0: never
    # read, the governance file alone applies). The staleness bound of an admin's change.
    admin_refresh_seconds: float = Field(default=ADMIN_REFRESH_SECONDS, ge=0, le=300)
    # Per-pod budget leases of the Firestore ledger (docs/governance.md): off, every call is a transaction.
    budget_leases: bool = True
    google_cloud_project: str = Field(
        default="agentry-dev",
        validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "AGENTRY_GATEWAY_GOOGLE_CLOUD_PROJECT"),
    )
    firestore_database: str = "(default)"
    # Upstream resilience (the runtime's provider layer): attempts per channel, first included.
    retry_attempts: int = Field(default=2, ge=1, le=10)
    retry_initial_seconds: float = Field(default=0.5, ge=0)
    retry_max_seconds: float = Field(default=10.0, ge=0)
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)
    upstream_timeout_seconds: float = Field(default=600.0, gt=0)
    # How often a channel's key (file or variable) is read again: a rotated Secret needs no restart.
    key_recheck_seconds: float = Field(default=10.0, ge=0)
    # Hard limit on one call through the gateway (all retries and fallbacks): below the reservation
    # TTL, so a reservation only outlives its call when the gateway pod dies.
    call_deadline_seconds: float = Field(default=1800.0, gt=0, le=3000)
    # A gateway pod whose heartbeat is silent this long is gone: the next transaction of another pod
    # counts its reservations at their estimate (Firestore ledger; docs/governance.md).
    pod_gone_seconds: float = Field(default=GONE_AFTER_SECONDS, ge=1, le=3600)
    # Settlements wait this long for the next reservation of the same user to share its transaction.
    settle_delay_seconds: float = Field(default=0.5, ge=0, le=10)
    # Run checkpoint journals carry `expireAt` = their last append + this (a Firestore TTL policy's
    # backstop; the operator prunes them with their Executions).
    checkpoint_retention_days: int = Field(default=RETENTION_DAYS, ge=1, le=3650)
    # max_tokens assumed for an OpenAI request that sets none (the reservation needs a bound).
    default_max_tokens: int = Field(default=4096, ge=1)
    host: str = "0.0.0.0"
    port: int = 8090

    def keyring(self) -> Keyring:
        return Keyring.from_settings(self.token_keys_dir, self.token_keys, self.token_kid)


@lru_cache
def get_settings() -> Settings:
    return Settings()


__all__ = ["Settings", "get_settings"]
