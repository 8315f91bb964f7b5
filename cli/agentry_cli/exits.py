"""Exit codes of the `agentry` API commands: one small enum a script can rely on (docs/cli.md).

`run` and `doctor` keep their own codes (the runtime's `agentry_common.exitcodes`, doctor's 0/1).
"""

from __future__ import annotations

from enum import IntEnum

from agentry_common.models import Phase


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the run ended Failed, Cancelled or Skipped
    USAGE = 2  # bad arguments, or no API URL / token configured (Click's own code for usage errors)
    WAITING_APPROVAL = 3  # `runs submit --wait`: the run stopped for a human's decision
    TIMEOUT = 4  # `--wait` / `logs -f`: the run was not over within --timeout
    REFUSED = 5  # the API refused the request: 400, 409, 413, 422
    UNAUTHORIZED = 6  # 401 or 403: no, a wrong, an expired or a revoked token
    NOT_FOUND = 7  # 404: absent, or not yours
    OVER_QUOTA = 8  # 429
    UNAVAILABLE = 9  # the API could not be reached, or answered 5xx


def for_status(status: int) -> ExitCode:
    """The exit code of an API error answer."""
    if status in (401, 403):
        return ExitCode.UNAUTHORIZED
    if status == 404:
        return ExitCode.NOT_FOUND
    if status == 429:
        return ExitCode.OVER_QUOTA
    if status >= 500:
        return ExitCode.UNAVAILABLE
    return ExitCode.REFUSED


def for_phase(phase: str) -> ExitCode:
    """The exit code of a run that stopped in `phase` (a phase that is not an end: TIMEOUT)."""
    if phase == Phase.SUCCEEDED:
        return ExitCode.OK
    if phase == Phase.WAITING_APPROVAL:
        return ExitCode.WAITING_APPROVAL
    if phase in (Phase.FAILED, Phase.CANCELLED, Phase.SKIPPED):
        return ExitCode.FAILED
    return ExitCode.TIMEOUT
