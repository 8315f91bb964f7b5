"""What the runtime does to itself before it holds a secret a tool could reach.

Tools run as the runtime's own UID, and any same-UID process may read `/proc/<pid>/environ`, `mem`
and `fd/*` of a *dumpable* process: a hostile `cat /proc/$PPID/environ` would print the provider key
or the run token. `PR_SET_DUMPABLE=0` makes those files root-owned and ptrace-protected; a pod that
drops every capability (Pod Security "restricted") cannot read them even as root. Tools start
dumpable again (execve resets the flag), so they keep working normally.

At the end, in a pod, the runtime is the container's PID 1 and the last writer of its termination
message (the result the operator reads). A tool may leave a process behind in its own session (the
tools' group kill misses it) that keeps rewriting that file, to forge the result or the approval
asked for; `end_strays` kills every other process of the container before the result is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0))


def forbid_inspection() -> bool:
    """Make this process non-dumpable; False (and nothing raised) where prctl does not exist."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return _prctl(PR_SET_DUMPABLE, 0) == 0
    except (OSError, AttributeError):
        return False


def dumpable() -> bool:
    return sys.platform.startswith("linux") and _prctl(PR_GET_DUMPABLE) == 1


def end_strays() -> bool:
    """As the container's PID 1, SIGKILL every other process in it (True); anywhere else (a local run,
    where -1 would mean every process of the user) do nothing (False)."""
    if os.getpid() != 1:
        return False
    with contextlib.suppress(ProcessLookupError):  # nothing left to kill
        os.kill(-1, signal.SIGKILL)
    return True
