"""Output of read commands: a Rich table for people, JSON or YAML (the API's own objects) for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

WIDE = 200  # a pipe has no width: do not wrap tables at Rich's default of 80 columns


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Mapping[str, Any]], Any]


def field(*path: str) -> Callable[[Mapping[str, Any]], Any]:
    """A column reading a nested field (None when any step is missing)."""

    def get(item: Mapping[str, Any]) -> Any:
        value: Any = item
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    return get


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else WIDE, highlight=False)


def note(message: str) -> None:
    """Progress for people, on standard error (standard output is the result)."""
    console(stderr=True).print(message, markup=False)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str | None = None) -> Table:
    out = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        out.add_column(column.header, overflow="fold")
    for row in rows:
        out.add_row(*(cell(column.value(row)) for column in columns))
    return out


def details(item: Mapping[str, Any]) -> Table:
    """One object as a two-column table, one line per top-level field."""
    out = Table(box=None, show_header=False, pad_edge=False)
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for key, value in item.items():
        out.add_row(key, cell(value))
    return out


def dump(data: Any, fmt: Format) -> str:
    if fmt is Format.YAML:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def emit(data: Any, fmt: Format, columns: Sequence[Column] | None = None, rows_of: str | None = None) -> None:
    """Print `data`: JSON/YAML as is; a table of `data[rows_of]` (or of a list) with `columns`; else
    one object's fields."""
    if fmt is not Format.TABLE:
        print(dump(data, fmt))
        return
    rows = data.get(rows_of, []) if rows_of and isinstance(data, Mapping) else data
    out = console()
    if columns is not None and isinstance(rows, list):
        if rows:
            out.print(table(rows, columns))
        else:
            out.print("nothing to show")
    elif isinstance(data, Mapping):
        out.print(details(data))
    else:
        out.print(cell(data))
