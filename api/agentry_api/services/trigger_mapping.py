"""A trigger's mapping: templates in which `{{ <JSONPath> }}` is replaced by what the path selects in
the delivery's JSON payload (jsonpath-ng). The payload is untrusted: the output is bounded, and the
paths come from the Trigger's owner, never from the payload."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.ext.parser import parse

from agentry_common.triggers import MAX_INPUT_CHARS, MAX_PARAMETER_CHARS, MappingSpec

PLACEHOLDER = re.compile(r"\{\{\s*(.+?)\s*\}\}")
MAX_MATCHES = 100  # values one path may contribute (a path over a large array)


class MappingError(ValueError):
    """A template whose path does not parse: `field` names it (`input`, `parameters.<name>`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=512)
def _compiled(path: str) -> JSONPath:
    return parse(path)


def check(template: str, field: str) -> None:
    """Raise MappingError when a path of the template does not parse."""
    for match in PLACEHOLDER.finditer(template):
        try:
            _compiled(match.group(1))
        except Exception as exc:  # the lexer and parser raise several kinds, some bare
            raise MappingError(field, f"{match.group(1)!r} is not a JSONPath: {exc}") from None


def check_mapping(mapping: MappingSpec) -> list[tuple[str, str]]:
    """Every problem of a mapping as (field, message)."""
    problems = []
    templates = [("input", mapping.input or "")] + [
        (f"parameters.{k}", v) for k, v in mapping.parameters.items()
    ]
    for field, template in templates:
        try:
            check(template, field)
        except MappingError as exc:
            problems.append((exc.field, str(exc)))
    return problems


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def render(template: str, payload: Any, limit: int) -> str:
    """The template with each path replaced by its matches (newline-joined), cut at `limit` chars."""

    def one(match: re.Match[str]) -> str:
        found = _compiled(match.group(1)).find(payload)[:MAX_MATCHES]
        return "\n".join(_text(m.value) for m in found)

    return PLACEHOLDER.sub(one, template)[:limit]


def run_input(mapping: MappingSpec, payload: Any) -> str:
    """The run's input: the input template, or without one the whole payload as JSON."""
    if mapping.input:
        return render(mapping.input, payload, MAX_INPUT_CHARS)
    return _text(payload)[:MAX_INPUT_CHARS]


def parameters(mapping: MappingSpec, payload: Any) -> dict[str, str]:
    return {k: render(v, payload, MAX_PARAMETER_CHARS) for k, v in mapping.parameters.items()}
