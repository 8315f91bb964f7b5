"""One row per figure a benchmark measured, gathered by `make bench` (bench/run_all.py) into one table.

A benchmark calls `record(...)` for each figure worth a row; the rows go to the JSON-lines file named by
AGENTRY_BENCH_RESULTS when it is set (a benchmark run on its own only prints).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_ENV = "AGENTRY_BENCH_RESULTS"


@dataclass(frozen=True)
class Row:
    bench: str  # which benchmark (module name)
    figure: str  # what was measured, in words
    value: str  # the figure, formatted with its unit
    baseline: str  # what it is compared with, measured in the same run ("" for none)
    ratio: str  # value / baseline, formatted ("" for none)
    goal: str  # the goal in words ("" for none)
    met: bool | None  # goal met? None when no goal applies

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def record(
    bench: str,
    figure: str,
    value: str,
    *,
    baseline: str = "",
    ratio: str = "",
    goal: str = "",
    met: bool | None = None,
) -> Row:
    row = Row(bench, figure, value, baseline, ratio, goal, met)
    target = os.environ.get(RESULTS_ENV)
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(row.to_json() + "\n")
    return row


def load(path: Path) -> list[Row]:
    if not path.exists():
        return []
    return [Row(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
