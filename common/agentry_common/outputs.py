"""Named outputs of a run: a Workflow step declares them, its Execution asks for them
(`spec.outputs`), the runtime offers the model a `set_output` tool for exactly those names and
reports the values in its result (`status.result.outputs`), and later steps template them as
`{{ steps.NAME.outputs.KEY }}`. Small by design: they travel in the pod's termination message
(4 KiB, shared with the summary), so the values are bounded here."""

from __future__ import annotations

import re
from typing import Final

NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
NAME = re.compile(NAME_PATTERN)
MAX_OUTPUTS: Final = 10
MAX_VALUE_BYTES: Final = 1024  # one value, UTF-8
MAX_TOTAL_BYTES: Final = 2048  # all values of a run, so the summary keeps room in the 4 KiB message
ENV_OUTPUTS: Final = "AGENTRY_OUTPUTS"  # the runtime's env: the names, comma-separated
TOOL_NAME: Final = "set_output"


def cut(value: str, max_bytes: int = MAX_VALUE_BYTES) -> str:
    """`value` cut to at most `max_bytes` of UTF-8, never inside a character."""
    return value.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def bounded(values: dict[str, str]) -> dict[str, str]:
    """Each value cut to MAX_VALUE_BYTES, and values dropped (last set first) past MAX_TOTAL_BYTES."""
    kept: dict[str, str] = {}
    total = 0
    for name, value in values.items():
        text = cut(value)
        size = len(text.encode("utf-8"))
        if total + size > MAX_TOTAL_BYTES:
            break
        kept[name] = text
        total += size
    return kept
