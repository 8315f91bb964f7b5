"""The one redaction step for everything that leaves a run: every event (events.py), the result
(termination message, the `result` event, result.json: app.finish), a paused run's signed state and
the runtime's own stderr. Values are redacted as structures, string by string (dict keys too), never
as serialized text, where JSON escaping would hide a secret holding a quote or a backslash.

A secret is found verbatim and in the forms a tool or the model prints it in: trimmed, line by line
when it has several lines, JSON-escaped, URL-encoded, base64 (standard and URL-safe, at each of the
three alignments it can have inside a longer encoded text) and hex; where a text was cut to a limit
before it got here, a piece of 8 characters or more at its end or start goes too. Anything shaped
like a provider key is redacted as well. Best effort against mistakes, not against a tool that means
to hide a value: one that reverses or splits it gets it out, which is why tools see no provider key.
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import Any, TextIO, cast
from urllib.parse import quote, quote_plus

from pydantic import BaseModel

# One key-shape pattern for the whole project lives with the models.
from agentry_common.models import _SECRETISH, may_hold_secret

REDACTED = "[REDACTED]"
MIN_LENGTH = 4  # shorter values would redact ordinary words from every event
MIN_ENCODED = 8  # encoded forms of shorter values, and shorter lines, are too likely in ordinary text
MIN_PIECE = 8  # the shortest piece of a secret redacted where a text was cut
SECRETISH_SHORTEST = 23  # the fewest characters _SECRETISH matches ("sk-ant-" and 16)
CUT_MARK = "…"  # what a text cut to one line ends with (tools.base.one_line)
# Short texts recur in every event and journal entry (keys, names, ids, model names): their redacted
# form is remembered, up to REMEMBERED of them (then forgotten at once), until the secrets change.
REMEMBER_UP_TO = 128  # characters
REMEMBERED = 4096


def _base64_forms(raw: bytes) -> set[str]:
    """The characters of base64 that encode `raw` alone, at each offset it can have in a longer text."""
    found: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        # Character i holds bits 6i..6i+5: keep those wholly inside raw's bits.
        core = encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
        found |= {core, core.replace("+", "-").replace("/", "_")}
    return found


def forms(secret: str) -> set[str]:
    """The texts that reveal `secret`: as is (trimmed), and encoded as tools commonly print it."""
    value = secret.strip()
    if len(value) < MIN_LENGTH:
        return set()
    found = {value}
    if len(value) < MIN_ENCODED:
        return found
    found |= {line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_ENCODED}
    raw = value.encode("utf-8")
    found |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    found |= {quote(value, safe=""), quote_plus(value, safe="")}
    found |= {raw.hex(), raw.hex().upper()}
    found |= _base64_forms(raw)
    return {f for f in found if len(f) >= MIN_LENGTH}


def _piece_at_end(text: str, form: str) -> int:
    """How many characters at the end of `text` are the start of `form` (0 if fewer than MIN_PIECE)."""
    window = text[-(len(form) - 1) :] if len(form) > 1 else ""
    return next((k for k in range(len(window), MIN_PIECE - 1, -1) if window.endswith(form[:k])), 0)


class Redactor:
    """The run's secrets (more may join while it runs: MCP servers' ones) and the step itself."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        self._grams: set[str] = set()  # every MIN_PIECE characters of a form: a cheap first test
        self._pattern: re.Pattern[str] | None = None
        self._short = MIN_PIECE  # a text shorter than this holds no form, no piece, no key shape
        self._seen: dict[str, str] = {}  # short texts and their redacted form, under these forms
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            self._forms |= forms(secret)
        self._grams = {f[i : i + MIN_PIECE] for f in self._forms for i in range(len(f) - MIN_PIECE + 1)}
        # Longest first; the marker itself is matched first and kept, so that redacting twice
        # changes nothing (a paused run's state is signed redacted, then its event is redacted).
        alternatives = [REDACTED, *sorted(self._forms, key=lambda f: (-len(f), f))]
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if self._forms else None
        # _SECRETISH matches SECRETISH_SHORTEST characters at least (tested): more than MIN_PIECE.
        self._short = min([MIN_PIECE, *(len(f) for f in self._forms)])
        self._seen = {}

    def text(self, text: str) -> str:
        size = len(text)
        if size < self._short:  # most dict keys and many values: nothing to find (fast)
            return text
        if size > REMEMBER_UP_TO:
            return self._redact(text)
        done = self._seen.get(text)
        if done is None:
            done = self._redact(text)
            if len(self._seen) >= REMEMBERED:
                self._seen.clear()
            self._seen[text] = done
        return done

    def _redact(self, text: str) -> str:
        # A substring search per form first: far faster than the pattern on text holding none.
        for form in self._forms:
            if form in text:
                assert self._pattern is not None
                text = self._pattern.sub(REDACTED, text)
                break
        text = self._cut_ends(text)
        if len(text) >= SECRETISH_SHORTEST and may_hold_secret(text):
            return _SECRETISH.sub(REDACTED, text)
        return text

    def _cut_ends(self, text: str) -> str:
        """Texts are cut to limits before they get here (an event's text, one-line summaries, the
        tail of a stderr): the start of a secret at the end, or its end at the start, goes too."""
        body, mark = (text[: -len(CUT_MARK)], CUT_MARK) if text.endswith(CUT_MARK) else (text, "")
        if body[-MIN_PIECE:] in self._grams:
            end = max(_piece_at_end(body, f) for f in self._forms)
            body = body[:-end] + REDACTED if end else body
        if body[:MIN_PIECE] in self._grams:
            start = max(_piece_at_end(body[: len(f) - 1][::-1], f[::-1]) for f in self._forms)
            body = REDACTED + body[start:] if start else body
        return body + mark

    def value(self, value: Any) -> Any:
        """`value` as JSON would carry it, every string in it redacted (keys too)."""
        # Exact types first: the structures that reach here are JSON-shaped, and this runs for every
        # event and journal entry (a subclass, such as a StrEnum, takes the general path below).
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is dict:
            return self._mapping(value)
        if kind is int or kind is float or kind is bool or value is None:
            return value
        if kind is list:
            return [self.value(v) for v in value]
        return self._other(value)

    def _other(self, value: Any) -> Any:
        if isinstance(value, Enum | bool | int | float):
            return value  # our own constants and numbers: nothing a tool wrote
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return self._mapping(value)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        if isinstance(value, BaseModel):
            return self.value(value.model_dump(mode="json", by_alias=True))
        return self.text(str(value))  # what json.dumps(default=str) would write

    def _mapping(self, value: Mapping[Any, Any]) -> dict[Any, Any]:
        text, item = self.text, self.value
        return {text(k) if isinstance(k, str) else k: item(v) for k, v in value.items()}


class RedactingStream(io.TextIOBase):
    """A text stream that redacts each line before passing it on (stderr is the pod's log too)."""

    def __init__(self, target: TextIO, redactor: Redactor) -> None:
        self.target = target
        self.redactor = redactor
        self._pending = ""  # the current line: a secret written in two pieces is still found

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self.target.write(self.redactor.text(line) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.target.write(self.redactor.text(self._pending))
            self._pending = ""
        self.target.flush()

    def fileno(self) -> int:
        return self.target.fileno()  # a child given our stderr writes to the real one


@contextmanager
def redacted_stderr(redactor: Redactor) -> Iterator[None]:
    """Route the runtime's own diagnostics (tracebacks, warnings) through the redaction step."""
    original = sys.stderr
    stream = RedactingStream(original, redactor)
    sys.stderr = cast(TextIO, stream)
    try:
        yield
    finally:
        stream.flush()
        sys.stderr = original
