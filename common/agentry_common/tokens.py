"""Short-lived tokens the LLM gateway accepts instead of provider API keys (docs/governance.md).

A run token is minted by the operator for one Execution and handed to the run pod as its provider
"API key" (ANTHROPIC_API_KEY / OPENAI_API_KEY), so the SDKs send it as `x-api-key` or
`Authorization: Bearer`. The gateway verifies it and attributes every call to the user, agent and
Execution it names. A service token (`typ: svc`) lets the operator ask for admission decisions and
`agentry doctor` probe channels. A user token (`typ: user`) is minted by the API for a person's own
LLM calls outside any run (the chat designer): it names the person's budget subject (the owner label
their agents carry), a purpose and a namespace, lives minutes, and the gateway meters and budgets its
calls like a run's (docs/governance.md, "User tokens").

Wire form (ASCII, no padding):

    agt1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "agt1." + <base64url(JSON claims)>))>

The key is chosen by the claims' `kid` from a keyring both sides mount from one Kubernetes Secret
(one file per key id). Rotation: add a key, make it the minting key, drop the old one after the
longest token lifetime. Pure module: standard library only, no I/O except `Keyring.from_dir`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

_PURPOSE: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

PREFIX: Final = "agt1"
MIN_KEY_BYTES: Final = 32
# Accepted clock difference between the minting operator and the verifying gateway.
CLOCK_SKEW_SECONDS: Final = 60
# The lifetime a run token gets on top of the Job's activeDeadlineSeconds (pod scheduling, pulls).
RUN_TOKEN_MARGIN_SECONDS: Final = 600
MAX_TOKEN_LENGTH: Final = 4096
# A user token's lifetime: one conversation turn of the designer (its retries included), with room.
USER_TOKEN_TTL_SECONDS: Final = 600
# The purpose of the chat designer's user tokens (the `agent` of its call records).
DESIGNER: Final = "designer"

TokenType = Literal["run", "svc", "user"]
TOKEN_TYPES: Final[tuple[TokenType, ...]] = ("run", "svc", "user")


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or signed with an unknown key.

    `reason` is a short machine-readable word (missing, malformed, unknown_key, bad_signature,
    expired, not_yet_valid, wrong_type); the message is for people and never contains key material.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RunLimits:
    """Per-run limits (the Agent's spec.budget) the gateway enforces too, as defence in depth."""

    tokens: int | None = None
    cost_usd: str | None = None  # decimal string, like the CR's USD fields

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.tokens is not None:
            out["tokens"] = self.tokens
        if self.cost_usd is not None:
            out["costUSD"] = self.cost_usd
        return out

    @classmethod
    def from_wire(cls, data: Any) -> RunLimits:
        if not isinstance(data, dict):
            return cls()
        tokens = data.get("tokens")
        cost = data.get("costUSD")
        return cls(
            tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
            cost_usd=cost if isinstance(cost, str) else None,
        )


@dataclass(frozen=True)
class Claims:
    """What a token says. For `typ="run"` namespace, execution and agent are required; for
    `typ="user"` namespace, user and purpose."""

    typ: TokenType
    exp: int  # unix seconds
    iat: int = 0
    kid: str = ""
    namespace: str = ""
    execution: str = ""
    execution_uid: str = ""
    agent: str = ""
    # Budget subject of the person who owns the agent: the Agent's `agentry.dev/owner` label when
    # the API created it, otherwise "ns:<namespace>" (see `user_key`).
    user: str = ""
    priority: int = 5  # 0 (lowest) .. 10 (highest)
    limits: RunLimits = field(default_factory=RunLimits)
    # The Agent's model chain (spec.model.name, then its fallbacks' names): the only models a call
    # with this token may ask for. Empty: any model (tokens minted before the claim existed).
    models: tuple[str, ...] = ()
    subject: str = ""  # for service tokens: who asks ("operator", "doctor")
    # For user tokens: what the calls are for ("designer"); lower-case letters, digits and dashes.
    purpose: str = ""
    # For a follow-up's run token: the Execution it continues (name and uid); the gateway lets the
    # token read that run's checkpoint journal (checkpoints.py), and nothing else of it.
    parent: str = ""
    parent_uid: str = ""
    # For a run token of an Agent with spec.memory.enabled: the Agent's uid, the scope of the memory
    # store the token may read and write (memory.py). Empty: no memory.
    memory: str = ""
    memory_limit: int = 0  # `memn`: the most entries that store may hold (spec.memory.maxEntries)

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"typ": self.typ, "kid": self.kid, "iat": self.iat, "exp": self.exp}
        if self.typ == "run":
            data.update(
                ns=self.namespace,
                ex=self.execution,
                exu=self.execution_uid,
                ag=self.agent,
                usr=self.user,
                pri=self.priority,
            )
            limits = self.limits.to_wire()
            if limits:
                data["lim"] = limits
            if self.models:
                data["mdl"] = list(self.models)
            if self.parent_uid:
                data.update(pa=self.parent, pau=self.parent_uid)
            if self.memory:
                data["mem"] = self.memory
                if self.memory_limit:
                    data["memn"] = self.memory_limit
        elif self.typ == "user":
            data.update(ns=self.namespace, usr=self.user, pur=self.purpose)
            if self.models:
                data["mdl"] = list(self.models)
        else:
            data["sub"] = self.subject
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Claims:
        def text(key: str) -> str:
            value = data.get(key, "")
            if not isinstance(value, str):
                raise InvalidToken("malformed", f"token claim {key!r} must be a string")
            return value

        def integer(key: str, default: int | None = None) -> int:
            value = data.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidToken("malformed", f"token claim {key!r} must be an integer")
            return value

        def names(key: str) -> tuple[str, ...]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InvalidToken("malformed", f"token claim {key!r} must be a list of names")
            return tuple(value)

        typ = data.get("typ")
        if typ not in TOKEN_TYPES:
            raise InvalidToken("malformed", "token claim 'typ' must be 'run', 'svc' or 'user'")
        claims = cls(
            typ=typ,
            exp=integer("exp"),
            iat=integer("iat", 0),
            kid=text("kid"),
            namespace=text("ns"),
            execution=text("ex"),
            execution_uid=text("exu"),
            agent=text("ag"),
            user=text("usr"),
            priority=integer("pri", 5),
            limits=RunLimits.from_wire(data.get("lim")),
            models=names("mdl"),
            subject=text("sub"),
            purpose=text("pur"),
            parent=text("pa"),
            parent_uid=text("pau"),
            memory=text("mem"),
            memory_limit=integer("memn", 0),
        )
        if claims.typ == "run" and not (claims.namespace and claims.execution and claims.agent):
            raise InvalidToken("malformed", "a run token must name its namespace, execution and agent")
        if claims.typ == "user" and not (
            claims.namespace and claims.user and _PURPOSE.fullmatch(claims.purpose)
        ):
            raise InvalidToken("malformed", "a user token must name its namespace, user and purpose")
        if not 0 <= claims.priority <= 10:
            raise InvalidToken("malformed", "token claim 'pri' must be between 0 and 10")
        return claims

    @property
    def user_key(self) -> str:
        return self.user or f"ns:{self.namespace}"

    def allows_model(self, model: str) -> bool:
        """True when a call with this token may ask for `model`: the token names no model chain (an
        older token), or the chain lists it."""
        return not self.models or model in self.models


@dataclass(frozen=True)
class Keyring:
    """HMAC keys by key id; `current` is the id new tokens are minted with."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("the token keyring is empty")
        if self.current not in self.keys:
            raise ValueError(f"the minting key id {self.current!r} is not in the keyring")
        for kid, key in self.keys.items():
            if not kid or "." in kid:
                raise ValueError(f"bad key id {kid!r}: non-empty, no dots")
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"token key {kid!r} is shorter than {MIN_KEY_BYTES} bytes")

    @classmethod
    def single(cls, key: bytes | str, kid: str = "k1") -> Keyring:
        raw = key.encode() if isinstance(key, str) else key
        return cls({kid: raw}, kid)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], current: str | None = None) -> Keyring:
        """A mounted Secret: one file per key id (file name), content = the key (whitespace stripped).

        The minting key is `current`, else the greatest key id (name keys by date: "2025-05").
        """
        directory = Path(path)
        keys: dict[str, bytes] = {}
        for item in sorted(directory.iterdir()):
            # Secret volumes hold `..data` symlinks and dot-directories next to the real entries.
            if item.name.startswith(".") or not item.is_file():
                continue
            keys[item.name] = item.read_bytes().strip()
        if not keys:
            raise ValueError(f"no token keys in {directory}")
        return cls(keys, current or max(keys))

    @classmethod
    def from_env_value(cls, value: str, current: str | None = None) -> Keyring:
        """`kid1:secret1,kid2:secret2` (development; clusters mount a Secret directory instead)."""
        keys: dict[str, bytes] = {}
        for part in value.split(","):
            kid, sep, secret = part.strip().partition(":")
            if not sep:
                raise ValueError("token keys must be written kid:secret[,kid:secret...]")
            keys[kid.strip()] = secret.strip().encode()
        return cls(keys, current or max(keys))

    @classmethod
    def from_settings(cls, keys_dir: str | None, keys: str | None, current: str | None) -> Keyring:
        """The keyring as the operator and the gateway are configured (AGENTRY_TOKEN_KEYS_DIR, else
        AGENTRY_TOKEN_KEYS, and AGENTRY_TOKEN_KID); ValueError says what to set."""
        if keys_dir:
            return cls.from_dir(keys_dir, current)
        if keys:
            return cls.from_env_value(keys, current)
        raise ValueError(
            "no token keys: set AGENTRY_TOKEN_KEYS_DIR to the mounted Secret directory shared by the "
            "operator and the gateway (or AGENTRY_TOKEN_KEYS=kid:secret for development)"
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, signed_part: str) -> bytes:
    return hmac.new(key, signed_part.encode("ascii"), hashlib.sha256).digest()


def mint(claims: Claims, keyring: Keyring, *, now: float | None = None) -> str:
    """Sign `claims` with the keyring's current key (its id and `iat` are filled in)."""
    issued = int(now if now is not None else time.time())
    full = replace(claims, kid=keyring.current, iat=claims.iat or issued)
    payload = _b64(json.dumps(full.to_wire(), separators=(",", ":"), sort_keys=True).encode())
    signed_part = f"{PREFIX}.{payload}"
    return f"{signed_part}.{_b64(_sign(keyring.keys[keyring.current], signed_part))}"


def mint_run_token(
    keyring: Keyring,
    *,
    namespace: str,
    execution: str,
    agent: str,
    execution_uid: str = "",
    user: str = "",
    priority: int = 5,
    active_deadline_seconds: int,
    limits: RunLimits | None = None,
    models: tuple[str, ...] | list[str] = (),
    parent: str = "",
    parent_uid: str = "",
    memory: str = "",
    memory_limit: int = 0,
    now: float | None = None,
) -> str:
    """The token for one Execution's Job: valid for the Job's deadline plus a margin. `models`: the
    Agent's model chain (its model, then its fallbacks); the gateway refuses calls for others.
    `parent`, `parent_uid`: the Execution a follow-up continues (its journal becomes readable).
    `memory`: the Agent's uid when its memory is on (the store the token may use), `memory_limit`
    the most entries it may hold."""
    issued = int(now if now is not None else time.time())
    claims = Claims(
        typ="run",
        exp=issued + active_deadline_seconds + RUN_TOKEN_MARGIN_SECONDS,
        iat=issued,
        namespace=namespace,
        execution=execution,
        execution_uid=execution_uid,
        agent=agent,
        user=user,
        priority=priority,
        limits=limits or RunLimits(),
        models=tuple(dict.fromkeys(m for m in models if m)),
        parent=parent,
        parent_uid=parent_uid,
        memory=memory,
        memory_limit=memory_limit if memory else 0,
    )
    return mint(claims, keyring, now=issued)


def mint_service_token(
    keyring: Keyring, subject: str, *, ttl_seconds: int = 300, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    return mint(Claims(typ="svc", exp=issued + ttl_seconds, iat=issued, subject=subject), keyring, now=issued)


def mint_user_token(
    keyring: Keyring,
    *,
    user: str,
    namespace: str,
    purpose: str = DESIGNER,
    ttl_seconds: int = USER_TOKEN_TTL_SECONDS,
    models: tuple[str, ...] | list[str] = (),
    now: float | None = None,
) -> str:
    """A person's token for their own LLM calls outside a run (the API mints one per designer turn).

    `user`: their budget subject, the owner label the API puts on their agents (so the calls count
    against the same user budgets as their runs); `namespace`: where the calls count (the API's
    namespace); `purpose`: what for (the call records' agent); `models`: the only models a call may
    ask for (empty: any). No Execution: the gateway charges user, pseudo-agent, namespace and
    installation (docs/governance.md, "User tokens")."""
    if not user or not namespace:
        raise ValueError("a user token needs a user (budget subject) and a namespace")
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError(f"bad purpose {purpose!r}: lower-case letters, digits and dashes")
    issued = int(now if now is not None else time.time())
    claims = Claims(
        typ="user",
        exp=issued + ttl_seconds,
        iat=issued,
        namespace=namespace,
        user=user,
        purpose=purpose,
        models=tuple(dict.fromkeys(m for m in models if m)),
    )
    return mint(claims, keyring, now=issued)


def verify(
    token: str | None,
    keyring: Keyring,
    *,
    now: float | None = None,
    expected: TokenType | tuple[TokenType, ...] | None = None,
) -> Claims:
    """The claims of a genuine, unexpired token; InvalidToken otherwise (constant-time signature check).
    `expected`: the type (or types) accepted here; another one is `wrong_type`."""
    if not token:
        raise InvalidToken("missing", "no token: send the run token as the provider API key")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed", "token too long")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidToken("malformed", "not an Agentry token (expected agt1.<claims>.<signature>)")
    try:
        raw = _unb64(parts[1])
        signature = _unb64(parts[2])
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed", "token is not valid base64url JSON") from exc
    if not isinstance(data, dict):
        raise InvalidToken("malformed", "token claims must be a JSON object")
    kid = data.get("kid")
    key = keyring.keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken("unknown_key", f"token signed with unknown key id {kid!r} (rotated out?)")
    if not hmac.compare_digest(signature, _sign(key, f"{parts[0]}.{parts[1]}")):
        raise InvalidToken("bad_signature", "token signature does not match")
    claims = Claims.from_wire(data)
    current = now if now is not None else time.time()
    if claims.exp + CLOCK_SKEW_SECONDS < current:
        raise InvalidToken("expired", f"token expired {int(current - claims.exp)} s ago")
    if claims.iat - CLOCK_SKEW_SECONDS > current:
        raise InvalidToken("not_yet_valid", "token issued in the future (clock skew?)")
    accepted = (expected,) if isinstance(expected, str) else expected
    if accepted is not None and claims.typ not in accepted:
        wanted = " or ".join(accepted)
        raise InvalidToken("wrong_type", f"a {wanted} token is required here, got a {claims.typ} token")
    return claims
