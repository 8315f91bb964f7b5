"""The checkpoint journal's contract (agentry_common.checkpoints): chained signatures, derived keys,
and the parent claims of a follow-up's run token."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from agentry_common.checkpoints import (
    MAX_RIDING_BYTES,
    AppendRequest,
    Close,
    Entry,
    append_body,
    canonical,
    chain_signature,
    decode_riding,
    derive_state_key,
    encode_riding,
    entry_bytes,
    entry_json,
    parent_state_keys,
    parse_keys,
    sign,
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
    # The writer builds no model when it signs (Signed.entry, when asked for): it checks what the
    # model would, so that a bad entry is refused where it is made, not by the store.
    for seq, kind in ((1, "Bad Kind"), (0, "message")):
        with pytest.raises(ValueError, match="kind"):
            sign("k1", "", seq, kind, {})


def test_a_follow_up_token_names_its_parent_and_a_plain_one_does_not() -> None:
    ring = Keyring(keys={"k": b"x" * 32}, current="k")
    child = mint_run_token(
        ring, namespace="ns", execution="b", agent="a", active_deadline_seconds=60, parent="p", parent_uid="u"
    )
    plain = mint_run_token(ring, namespace="ns", execution="b", agent="a", active_deadline_seconds=60)
    claims = verify(child, ring, expected="run")
    assert (claims.parent, claims.parent_uid) == ("p", "u")
    assert verify(plain, ring, expected="run").parent_uid == ""


def _riding(entries: list[Entry], delivered: list[int] | None = None) -> str | None:
    return encode_riding([entry_json(e) for e in entries], delivered or [])


def test_entries_ride_a_model_call_in_one_header_value_within_its_bound() -> None:
    entries = _journal("k1", 3)
    value = _riding(entries, [2])
    assert value is not None and value.isascii() and len(value) <= MAX_RIDING_BYTES
    rode = decode_riding(value)
    assert (rode.entries, rode.delivered) == (entries, [2])
    assert rode.encoded == [entry_json(e) for e in entries]  # kept as sent: not serialised again
    # Non-ASCII text and escapes survive the header (base64url of UTF-8, one entry per line).
    accents = [sign_entry("k1", "", 1, "message", {"t": "héllo ✓\nnext line"})]
    again = _riding(accents)
    assert again is not None and decode_riding(again).entries == accents


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_what_cannot_ride_is_said_so() -> None:
    assert _riding([sign_entry("k1", "", 1, "message", {"t": "x" * MAX_RIDING_BYTES})]) is None
    forged = _riding(_journal("k1", 1))
    assert forged is not None
    line = entry_json(_journal("k1", 1)[0])
    bad = [
        "not base64!",
        forged[:-8],
        "A" * (MAX_RIDING_BYTES + 1),
        _b64('{"delivered":[]}'),  # no entry
        _b64("\n".join(['{"delivered":[]}', *[line] * 65])),  # more than an append takes
        _b64('{"delivered":[]}\n{"seq":1}'),  # not an entry
        _b64(f'{{"delivered":"x"}}\n{line}'),
        _b64(f'{{"delivered":[],"close":"end"}}\n{line}'),  # a riding append never closes the run
    ]
    for value in bad:
        with pytest.raises(ValueError):
            decode_riding(value)


DATA = [
    {},
    {"n": 1, "f": 0.1, "b": True, "z": None},
    {"text": 'quote " backslash \\ newline \n tab \t bell \x07 é ✓ \u2028 😀', "list": [1, "a", {"k": []}]},
    {"Zed": {"b": 1, "a": 2}, "alpha": "", "10": 1, "9": 2},
]


@pytest.mark.parametrize("data", DATA)
def test_a_signed_entry_keeps_the_canonical_json_a_store_would_build(data: dict[str, object]) -> None:
    """The writer's JSON (one serialisation for the signature and the wire) is byte for byte what
    canonical() writes of the entry's fields, and what the store counts."""
    signed = sign("k1", "a" * 64, 7, "tool_result", data, at="2026-11-28T10:00:00.000Z")
    assert signed.json == canonical(signed.entry.wire()).decode() == entry_json(signed.entry)
    assert entry_bytes(signed.entry) == len(canonical(signed.entry.wire()))
    assert signed.entry.sig == chain_signature("k1", "a" * 64, 7, "tool_result", data)
    assert verify_chain(["k1"], [sign_entry("k1", "", 1, "message", data)]) == "k1"


def test_an_append_body_is_the_append_request_it_names() -> None:
    entries = _journal("k1", 2)
    jsons = [entry_json(e) for e in entries]
    for close in (None, Close.IDLE, Close.END):
        body = append_body(jsons, [3, 4], close)
        assert AppendRequest.model_validate_json(body) == AppendRequest(
            entries=entries, delivered=[3, 4], close=close
        )
