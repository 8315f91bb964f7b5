"""The operator's typing bar, run by `make lint`: `python hack/typing_bar.py` fails when the operator's
code (operator/agentry_operator) names `Any` more often than CEILING.

Counted are the `Any` names in the code (tokens: comments and strings do not count). New code reads and
writes custom resources through the models in agentry_common, and Kubernetes objects through typed
shapes; when the count drops, lower CEILING to it.
"""

from __future__ import annotations

import io
import sys
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "operator" / "agentry_operator"
CEILING = 239


def count(source: str) -> int:
    """The `Any` names in one module's code."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return sum(1 for t in tokens if t.type == tokenize.NAME and t.string == "Any")


def tally(root: Path) -> dict[Path, int]:
    """Per module under `root`, its count (modules without any left out)."""
    found = {path: count(path.read_text()) for path in sorted(root.rglob("*.py"))}
    return {path: n for path, n in found.items() if n}


def main(root: Path = PACKAGE, ceiling: int = CEILING) -> int:
    per_module = tally(root)
    total = sum(per_module.values())
    where = root.relative_to(REPO) if root.is_relative_to(REPO) else root
    if total > ceiling:
        print(f"typing bar: {total} `Any` in {where}, above the ceiling of {ceiling}. Most:", file=sys.stderr)
        for path, n in sorted(per_module.items(), key=lambda item: -item[1])[:5]:
            print(f"  {n:4d} {path.relative_to(root)}", file=sys.stderr)
        return 1
    print(f"typing bar: {total} `Any` in {where} (ceiling {ceiling})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
