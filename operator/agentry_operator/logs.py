"""The operator's logging: kopf's JSON lines, without the routine ones unless --verbose.

kopf logs a line at INFO for every handler that succeeds and every object whose handlers are done:
for each watch event of every Execution, Job and Pod. A restart with 10,000 runs wrote ~40,000 such
lines, and without them its CPU fell from ~36 s to ~26 s (bench/operator_scale.py). Failures,
retries, warnings and the handlers' own lines are kept.
"""

from __future__ import annotations

import logging

import kopf

NOISY = ("httpx2", "httpcore2")  # a line per API request (thousands per second at a burst of starts)


class Routine(logging.Filter):
    """Drops kopf's "Handler 'x' succeeded." and "... is processed: N succeeded; 0 failed." lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if not isinstance(message, str) or record.levelno > logging.INFO:
            return True
        if message.startswith("Handler ") and message.endswith(" succeeded."):
            return False
        return not (" is processed: " in message and message.endswith(" 0 failed."))


def configure(verbose: bool) -> None:
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    if verbose:
        return
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(Routine())
