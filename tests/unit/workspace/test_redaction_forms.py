"""The redaction step finds a secret in the forms a tool or the model prints it in, not only verbatim:
trimmed of the newline a Secret often ends with, line by line when it has several, JSON-escaped,
URL-encoded, base64 (standard or URL-safe, also inside a longer encoded text) and hex. Short values
are left alone, and redacting twice changes nothing (a paused run's state is signed once redacted)."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import quote, quote_plus

import pytest

from agentry_workspace.events import RecordingSink
from agentry_workspace.redaction import REDACTED, REMEMBER_UP_TO, REMEMBERED, Redactor

pytestmark = pytest.mark.unit

SECRET = 'Tok+en/s3cr3t?="ab'  # characters every encoding treats specially


def scrub(text: str, secret: str = SECRET) -> str:
    return RecordingSink(secrets=[secret]).scrub(text)


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        binascii.hexlify(SECRET.encode()).decode(),
        binascii.hexlify(SECRET.encode()).decode().upper(),
    ],
    ids=["verbatim", "json", "url", "url-plus", "base64", "base64url", "hex", "HEX"],
)
def test_each_encoded_form_is_redacted(form: str) -> None:
    out = scrub(f"value: {form} end")
    assert "[REDACTED]" in out and form not in out, out


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_base64_of_the_secret_inside_a_longer_text_is_redacted(offset: int) -> None:
    """Base64 of `prefix + secret + suffix` holds the secret's encoding at one of three alignments."""
    blob = base64.b64encode(b"p" * offset + b"Authorization: " + SECRET.encode() + b"\n").decode()
    assert "[REDACTED]" in scrub(blob)


def test_a_trailing_newline_of_the_value_does_not_hide_it() -> None:
    assert scrub(f"token={SECRET}.", SECRET + "\n") == "token=[REDACTED]."


def test_each_line_of_a_multiline_secret_is_redacted() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF\nAASCBKcwggSjAgEAAoIBAQC7\n-----END KEY-----\n"
    out = scrub("leaked: AASCBKcwggSjAgEAAoIBAQC7 only", key)
    assert out == "leaked: [REDACTED] only"


def test_short_values_and_ordinary_text_are_left_alone() -> None:
    assert scrub("the pin is abc", "abc") == "the pin is abc"
    assert scrub("nothing secret here") == "nothing secret here"


@pytest.mark.parametrize("secret", [SECRET, "REDACTED", "[REDACTED]", "ED]xyzxyz"])
def test_redacting_twice_changes_nothing(secret: str) -> None:
    sink = RecordingSink(secrets=[secret])
    once = sink.scrub(f"a {secret} b {base64.b64encode(secret.encode()).decode()} c")
    assert sink.scrub(once) == once and secret not in once.replace("[REDACTED]", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"cut here: {SECRET[:9]}…", "cut here: [REDACTED]…"),  # one_line() cut it
        (f"cut here: {SECRET[:9]}", "cut here: [REDACTED]"),  # an event's limit cut it
        (f"{SECRET[-9:]} is the tail", "[REDACTED] is the tail"),  # a tail of stderr began there
        (f"too short to tell: {SECRET[:7]}", f"too short to tell: {SECRET[:7]}"),
    ],
)
def test_a_piece_of_a_secret_where_a_text_was_cut_is_redacted(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_texts_too_short_to_hold_a_secret_pass_at_once_and_short_secrets_still_go() -> None:
    """The fast path for short texts skips only what could hold no form, no cut piece and no key
    shape: its bound follows the run's shortest secret form."""
    import re._parser as sre_parse

    from agentry_common.models import _SECRETISH
    from agentry_workspace.redaction import MIN_PIECE, SECRETISH_SHORTEST, Redactor

    assert sre_parse.parse(_SECRETISH.pattern).getwidth()[0] == SECRETISH_SHORTEST > MIN_PIECE
    long_only = Redactor(["a-long-secret-value-123"])
    assert long_only.text("role") == "role" and long_only.text("x a-long-secret-value-123") == "x [REDACTED]"
    assert long_only.text("…secret-value-123"[-9:]) == "[REDACTED]"  # a cut piece of 9 at a text's start
    short = Redactor(["pw42"])
    assert short.text("pw42!") == "[REDACTED]!" and short.text("pw4") == "pw4"


def test_the_key_shape_scan_is_skipped_only_for_text_it_cannot_match() -> None:
    """Every alternative of the key-shape pattern starts with one of the prefixes looked for first,
    so text holding none of them cannot match; text holding one is scanned (and redacted)."""
    import re._constants as sre_constants
    import re._parser as sre_parse

    from agentry_common.models import _SECRETISH, _SECRETISH_PREFIXES, may_hold_secret
    from agentry_workspace.redaction import Redactor

    (group,) = sre_parse.parse(_SECRETISH.pattern)
    branches = group[1][3][0][1][1]  # SUBPATTERN -> its pattern -> BRANCH -> the alternatives
    for branch in branches:
        literal = "".join(chr(v) for op, v in branch if op is sre_constants.LITERAL)
        assert any(literal.startswith(p) for p in _SECRETISH_PREFIXES), literal
    key = "sk-ant-" + "A1b2" * 8
    redactor = Redactor([])
    for text in (f"x {key} y", f"AIza{'x' * 35}", "sk-" + "q" * 40):
        assert may_hold_secret(text) and "[REDACTED]" in redactor.text(text)
    plain = "a long tool output without anything shaped like a key " * 20
    assert not may_hold_secret(plain) and redactor.text(plain) == plain


def test_a_secret_added_later_is_found_in_a_text_seen_before() -> None:
    """Short texts' redacted forms are remembered; a secret that joins (an MCP server's) forgets them."""
    redactor = Redactor(["first-secret-value"])
    seen = "token later-secret-value here"
    assert redactor.text(seen) == seen and redactor.value({seen: [seen]}) == {seen: [seen]}
    redactor.add(["later-secret-value"])
    assert redactor.text(seen) == f"token {REDACTED} here"
    assert redactor.value({seen: [seen]}) == {f"token {REDACTED} here": [f"token {REDACTED} here"]}


def test_remembered_texts_are_bounded() -> None:
    redactor = Redactor(["some-secret-value"])
    for i in range(REMEMBERED * 2 + 1):
        assert redactor.text(f"an ordinary text {i}") == f"an ordinary text {i}"
    assert redactor.text("x some-secret-value") == f"x {REDACTED}"
    assert len(redactor._seen) <= REMEMBERED
    assert redactor.text("y" * (REMEMBER_UP_TO + 1)) and len(redactor._seen) <= REMEMBERED
