"""kopf's routine success lines are dropped; failures, warnings and the handlers' own lines stay."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import kopf
import pytest

from agentry_operator import logs

pytestmark = pytest.mark.unit

BODY = kopf.Body(
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns", "uid": "u"}}
)


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# What logs.configure (and kopf.configure in it) changes: restored after each test.
TOUCHED = ("", "kopf.objects", "asyncio", *logs.NOISY)


@pytest.fixture
def kept() -> Iterator[Kept]:
    """The kopf.objects logger as configured, its records collected; the logging set-up restored."""
    loggers = [logging.getLogger(name) for name in TOUCHED]
    saved = [(lg.level, lg.propagate, list(lg.handlers), list(lg.filters)) for lg in loggers]
    handler = Kept()
    logging.getLogger("kopf.objects").addHandler(handler)
    yield handler
    for lg, (level, propagate, handlers, filters) in zip(loggers, saved, strict=True):
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:], lg.filters[:] = handlers, filters


def emit_all() -> None:
    logger = kopf.LocalObjectLogger(body=BODY, settings=kopf.OperatorSettings())
    logger.info("Handler 'job_event' succeeded.")
    logger.info("Resuming is processed: 1 succeeded; 0 failed.")
    logger.info("Resuming is processed: 0 succeeded; 1 failed.")
    logger.info("started job run-1 for execution run-1")
    logger.warning("Handler 'job_event' succeeded.")  # a warning is never routine
    logger.error("Handler 'job_event' failed with an exception. Will retry.")


def test_the_routine_lines_are_dropped_and_the_rest_kept(kept: Kept) -> None:
    logs.configure(verbose=False)
    emit_all()
    assert kept.messages == [
        "Resuming is processed: 0 succeeded; 1 failed.",
        "started job run-1 for execution run-1",
        "Handler 'job_event' succeeded.",
        "Handler 'job_event' failed with an exception. Will retry.",
    ]
    assert logging.getLogger("httpx2").level == logging.WARNING


def test_verbose_keeps_every_line(kept: Kept) -> None:
    logs.configure(verbose=True)
    emit_all()
    assert len(kept.messages) == 6
