"""The checkpoint journal's contract (agentry_common.checkpoints): chained signatures, derived keys,
and the parent claims of a follow-up's run token."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from agentry_common.checkpoints import (
    MAX_RIDING_BYTES,
    AppendRequest,
    Close,
    Entry,
    decode_riding,
    derive_state_key,
    encode_riding,
    parent_state_keys,
    parse_keys,
    sign_entry,
    verify_chain,
)
from agentry_common.tokens import Keyring, mint_run_token, verify

pytestmark = pytest.mark.unit


def _journal(key: str, n: int) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, n + 1):
        previous = entries[-1].sig if entries else ""
        entries.append(sign_entry(key, previous, seq, "message", {"n": seq}))
    return entries


def test_a_whole_journal_verifies_with_its_key_only() -> None:
    entries = _journal("k1", 3)
    assert verify_chain(["other", "k1"], entries) == "k1"
    assert verify_chain(["other"], entries) is None
    assert verify_chain(["k1"], []) == "k1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: [e[0], e[2]],  # an entry cut out
        lambda e: [e[1], e[0], e[2]],  # reordered
        lambda e: [e[0], e[1], e[2].model_copy(update={"data": {"n": 99}})],  # edited
        lambda e: [e[0], e[1].model_copy(update={"kind": "reset"}), e[2]],  # kind changed
        lambda e: e[1:],  # the start cut off
    ],
)
def test_a_tampered_journal_does_not_verify(tamper: object) -> None:
    entries = _journal("k1", 3)
    assert verify_chain(["k1"], tamper(entries)) is None  # type: ignore[operator]


def test_state_keys_are_per_run_and_per_ring_key() -> None:
    a = derive_state_key(b"r" * 32, "ns", "uid-1")
    assert a == derive_state_key(b"r" * 32, "ns", "uid-1")
    assert a not in {derive_state_key(b"r" * 32, "ns", "uid-2"), derive_state_key(b"s" * 32, "ns", "uid-1")}
    assert parent_state_keys([b"r" * 32, b"s" * 32], "ns", "uid-1")[0] == a
    assert parse_keys('["a", 3, ""]') == ["a"] and parse_keys("{") == [] and parse_keys("") == []


def test_an_entry_names_its_problem() -> None:
    with pytest.raises(ValidationError, match="kind"):
        Entry(seq=1, kind="Bad Kind", sig="0" * 64)
    with pytest.raises(ValidationError, match="entries"):
        AppendRequest(entries=[])


def test_a_follow_up_token_names_its_parent_and_a_plain_one_does_not() -> None:
    ring = Keyring(keys={"k": b"x" * 32}, current="k")
    child = mint_run_token(
        ring, namespace="ns", execution="b", agent="a", active_deadline_seconds=60, parent="p", parent_uid="u"
    )
    plain = mint_run_token(ring, namespace="ns", execution="b", agent="a", active_deadline_seconds=60)
    claims = verify(child, ring, expected="run")
    assert (claims.parent, claims.parent_uid) == ("p", "u")
    assert verify(plain, ring, expected="run").parent_uid == ""


def test_entries_ride_a_model_call_in_one_header_value_within_its_bound() -> None:
    request = AppendRequest(entries=_journal("k1", 3), delivered=[2])
    value = encode_riding(request)
    assert value is not None and value.isascii() and len(value) <= MAX_RIDING_BYTES
    assert decode_riding(value) == request
    # Non-ASCII text survives the header (base64url of UTF-8).
    accents = AppendRequest(entries=[sign_entry("k1", "", 1, "message", {"t": "héllo ✓"})])
    again = encode_riding(accents)
    assert again is not None and decode_riding(again) == accents


def test_what_cannot_ride_is_said_so() -> None:
    big = AppendRequest(entries=[sign_entry("k1", "", 1, "message", {"t": "x" * MAX_RIDING_BYTES})])
    assert encode_riding(big) is None  # appended on its own instead
    closing = AppendRequest(entries=_journal("k1", 1), close=Close.END)
    assert encode_riding(closing) is None  # a closing append answers about the inbox
    forged = encode_riding(AppendRequest(entries=_journal("k1", 1)))
    assert forged is not None
    for bad in ("not base64!", forged[:-8], "A" * (MAX_RIDING_BYTES + 1)):
        with pytest.raises(ValueError):
            decode_riding(bad)
    raw = {"entries": [_journal("k1", 1)[0].wire()], "close": "end"}
    with pytest.raises(ValueError, match="may not close"):
        decode_riding(base64.urlsafe_b64encode(json.dumps(raw).encode()).decode())
