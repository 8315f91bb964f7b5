"""A kept workspace's size (Agent spec.workspace.size): a run that grows /workspace past it is stopped
`workspace_full`.

On a cloud disk the claim's size is the disk's, and a write past it fails (ENOSPC). A directory-backed
volume (the local node's, any hostPath-style provisioner) has no such bound, so the runtime measures
the workspace itself: while the run goes (every POLL_SECONDS, off the event loop) and once more at its
end. Only set when the operator passes the limit (a kept workspace); an emptyDir is the kubelet's to
bound (its sizeLimit evicts the pod).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from agentry_common.workspace import ENV_WORKSPACE_LIMIT

from .outcome import Outcome, StopReason

POLL_SECONDS = 2.0
UNSTOPPED = frozenset({StopReason.INTERRUPTED, StopReason.APPROVAL_REQUIRED, StopReason.ERROR})


def used_bytes(root: Path) -> int:
    """The bytes of the files under `root` (symbolic links not followed; what vanishes meanwhile
    counts as nothing)."""
    total, stack = 0, [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


class WorkspaceGuard:
    """Measures one workspace against its limit; `note` says why the run was stopped once tripped."""

    def __init__(self, root: Path, limit: int, on_trip: Callable[[str], None]) -> None:
        self.root = root
        self.limit = limit
        self.on_trip = on_trip
        self.note: str | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], root: Path, on_trip: Callable[[str], None]
    ) -> WorkspaceGuard | None:
        raw = env.get(ENV_WORKSPACE_LIMIT, "")
        return cls(root, int(raw), on_trip) if raw.isdigit() and int(raw) > 0 else None

    def over(self) -> str | None:
        """Why the workspace is past its limit, or None (safe to call off the event loop)."""
        used = used_bytes(self.root)
        if used <= self.limit:
            return None
        return (
            f"the kept workspace holds {used} bytes, more than its {self.limit} (spec.workspace.size); "
            "remove files, or raise the size"
        )

    def check(self) -> bool:
        """Measure once, on the event loop's thread; trip (stop the run) past the limit."""
        return self.note is not None or self._trip(self.over())

    def _trip(self, why: str | None) -> bool:
        if why is None:
            return False
        if self.note is None:
            self.note = why
            self.on_trip(why)
        return True

    async def watch(self) -> None:
        """Measure every POLL_SECONDS (the walk off the event loop) until tripped; cancel it when the
        run ends."""
        while True:
            if self._trip(await asyncio.to_thread(self.over)):
                return
            await asyncio.sleep(POLL_SECONDS)

    def outcome(self, outcome: Outcome) -> Outcome:
        """The run's outcome, or `workspace_full` with its usage when the workspace is past its size
        (a run handed to a new pod or paused for an approval is not ended here)."""
        if outcome.stop_reason in UNSTOPPED:
            return outcome
        self.note = self.note or self.over()  # the run has ended: nothing more to stop
        if self.note is None:
            return outcome
        outcome.stop_reason = StopReason.WORKSPACE_FULL
        outcome.summary = f"Stopped: {self.note}."
        return outcome
