"""Run, service and user tokens: mint/verify round trip, forgery, expiry, rotation, key loading."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from agentry_common.tokens import (
    RUN_TOKEN_MARGIN_SECONDS,
    USER_TOKEN_TTL_SECONDS,
    Claims,
    InvalidToken,
    Keyring,
    RunLimits,
    mint,
    mint_run_token,
    mint_service_token,
    mint_user_token,
    verify,
)

pytestmark = pytest.mark.unit

KEY = Keyring.single("s" * 32, "2025-05")
NOW = 1_750_000_000.0


def run_token(keyring: Keyring = KEY, **kw: object) -> str:
    args: dict[object, object] = {
        "namespace": "team-a",
        "execution": "weekly-28xk2",
        "agent": "weekly",
        "execution_uid": "0b6f",
        "user": "owner-hash",
        "priority": 7,
        "active_deadline_seconds": 1830,
        "limits": RunLimits(tokens=200_000, cost_usd="2.00"),
        "now": NOW,
    }
    args.update(kw)
    return mint_run_token(keyring, **args)  # type: ignore[arg-type]


def test_round_trip_carries_every_claim() -> None:
    claims = verify(run_token(), KEY, now=NOW + 10, expected="run")
    assert (claims.namespace, claims.execution, claims.agent, claims.execution_uid) == (
        "team-a",
        "weekly-28xk2",
        "weekly",
        "0b6f",
    )
    assert claims.user_key == "owner-hash" and claims.priority == 7
    assert claims.limits == RunLimits(tokens=200_000, cost_usd="2.00")
    assert claims.kid == "2025-05" and claims.iat == int(NOW)
    assert claims.exp == int(NOW) + 1830 + RUN_TOKEN_MARGIN_SECONDS


def test_user_defaults_to_the_namespace() -> None:
    assert verify(run_token(user=""), KEY, now=NOW).user_key == "ns:team-a"


def test_token_looks_like_an_opaque_key() -> None:
    token = run_token()
    assert token.startswith("agt1.") and token.count(".") == 2
    assert all(c.isalnum() or c in "._-" for c in token)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("sk-ant-real-key", "malformed"),
        ("agt1.###.###", "malformed"),
        ("agt1." + "a" * 5000, "malformed"),
    ],
)
def test_garbage_is_refused(token: str | None, reason: str) -> None:
    with pytest.raises(InvalidToken) as err:
        verify(token, KEY, now=NOW)
    assert err.value.reason == reason


def test_changed_claims_break_the_signature() -> None:
    prefix, payload, sig = run_token().split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["ns"] = "team-b"  # try to charge another team
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken) as err:
        verify(f"{prefix}.{forged}.{sig}", KEY, now=NOW)
    assert err.value.reason == "bad_signature"


def test_another_key_is_refused() -> None:
    other = Keyring.single("o" * 32, "2025-05")
    with pytest.raises(InvalidToken) as err:
        verify(run_token(other), KEY, now=NOW)
    assert err.value.reason == "bad_signature"


def test_expiry_and_clock_skew() -> None:
    token = run_token(active_deadline_seconds=100)
    exp = int(NOW) + 100 + RUN_TOKEN_MARGIN_SECONDS
    verify(token, KEY, now=exp + 59)  # within the skew allowance
    with pytest.raises(InvalidToken) as err:
        verify(token, KEY, now=exp + 61)
    assert err.value.reason == "expired"
    with pytest.raises(InvalidToken) as err:
        verify(token, KEY, now=NOW - 120)
    assert err.value.reason == "not_yet_valid"


def test_token_type_is_checked() -> None:
    svc = mint_service_token(KEY, "operator", now=NOW)
    assert verify(svc, KEY, now=NOW, expected="svc").subject == "operator"
    with pytest.raises(InvalidToken) as err:
        verify(svc, KEY, now=NOW, expected="run")
    assert err.value.reason == "wrong_type"
    with pytest.raises(InvalidToken):
        verify(run_token(), KEY, now=NOW, expected="svc")


def test_run_token_needs_its_names() -> None:
    with pytest.raises(InvalidToken) as err:
        verify(mint(Claims(typ="run", exp=int(NOW) + 60), KEY, now=NOW), KEY, now=NOW)
    assert err.value.reason == "malformed"


def test_rotation_old_tokens_verify_until_the_old_key_is_removed() -> None:
    old = Keyring.single("a" * 32, "2025-04")
    token = run_token(old)
    both = Keyring({"2025-04": b"a" * 32, "2025-05": b"b" * 32}, "2025-05")
    assert verify(token, both, now=NOW).kid == "2025-04"
    assert verify(run_token(both), both, now=NOW).kid == "2025-05"
    with pytest.raises(InvalidToken) as err:
        verify(token, Keyring({"2025-05": b"b" * 32}, "2025-05"), now=NOW)
    assert err.value.reason == "unknown_key"


def test_keyring_from_a_mounted_secret(tmp_path: Path) -> None:
    (tmp_path / "2025-04").write_text("a" * 40 + "\n")
    (tmp_path / "2025-05").write_text("b" * 40)
    (tmp_path / "..data").mkdir()  # what a Secret volume also contains
    ring = Keyring.from_dir(tmp_path)
    assert ring.current == "2025-05" and set(ring.keys) == {"2025-04", "2025-05"}
    assert ring.keys["2025-04"] == b"a" * 40
    assert Keyring.from_dir(tmp_path, "2025-04").current == "2025-04"


def test_keyring_rejects_weak_or_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shorter"):
        Keyring.single("short")
    with pytest.raises(ValueError, match="no token keys"):
        Keyring.from_dir(tmp_path)
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring({"a": b"x" * 32}, "b")
    ring = Keyring.from_env_value("k1:" + "x" * 32 + ", k2:" + "y" * 32)
    assert ring.current == "k2"


def test_user_token_names_its_person_purpose_namespace_and_models() -> None:
    token = mint_user_token(KEY, user="1f3a9c", namespace="agentry", models=["claude-x", "claude-x"], now=NOW)
    claims = verify(token, KEY, now=NOW + 10, expected="user")
    assert (claims.typ, claims.user_key, claims.namespace, claims.purpose) == (
        "user",
        "1f3a9c",
        "agentry",
        "designer",
    )
    assert claims.models == ("claude-x",) and claims.allows_model("claude-x")
    assert not claims.allows_model("claude-y")
    assert (claims.execution, claims.agent, claims.priority) == ("", "", 5)
    assert claims.exp == int(NOW) + USER_TOKEN_TTL_SECONDS == int(NOW) + 600
    wire = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert set(wire) == {"typ", "kid", "iat", "exp", "ns", "usr", "pur", "mdl"}


def test_user_token_lives_minutes_and_is_its_own_type() -> None:
    token = mint_user_token(KEY, user="u", namespace="ns", ttl_seconds=60, now=NOW)
    verify(token, KEY, now=NOW + 60 + 59, expected=("run", "user"))
    with pytest.raises(InvalidToken) as err:
        verify(token, KEY, now=NOW + 60 + 61)
    assert err.value.reason == "expired"
    for wanted in ("run", "svc"):
        with pytest.raises(InvalidToken) as err:
            verify(token, KEY, now=NOW, expected=wanted)  # type: ignore[arg-type]
        assert err.value.reason == "wrong_type"
    # A run or a service token is not a user token either.
    with pytest.raises(InvalidToken, match="a user token is required"):
        verify(run_token(), KEY, now=NOW, expected="user")
    with pytest.raises(InvalidToken, match="a run or user token is required"):
        verify(mint_service_token(KEY, "operator", now=NOW), KEY, now=NOW, expected=("run", "user"))


def test_user_token_needs_its_names() -> None:
    for claims in (
        Claims(typ="user", exp=int(NOW) + 60, namespace="ns", purpose="designer"),  # no user
        Claims(typ="user", exp=int(NOW) + 60, user="u", purpose="designer"),  # no namespace
        Claims(typ="user", exp=int(NOW) + 60, namespace="ns", user="u", purpose="Bad Purpose"),
    ):
        with pytest.raises(InvalidToken) as err:
            verify(mint(claims, KEY, now=NOW), KEY, now=NOW)
        assert err.value.reason == "malformed"
    with pytest.raises(ValueError, match="user"):
        mint_user_token(KEY, user="", namespace="ns")
    with pytest.raises(ValueError, match="purpose"):
        mint_user_token(KEY, user="u", namespace="ns", purpose="a/b")
