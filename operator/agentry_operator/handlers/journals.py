"""Checkpoint journals go with their runs: the operator asks the LLM gateway (which stores them) to
drop the journals of the Executions it prunes (history limits) and of a deleted Agent's runs. Best
effort and batched (agentry_operator.governance.Governance.prune): never raises."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..builders.follow_up import text
from .state import Logger, State


async def prune_journals(state: State, executions: Iterable[Mapping[str, object]], logger: Logger) -> None:
    """Drop the journals of these Executions (their last known state); nothing without the gateway."""
    if state.governance is None:
        return
    runs = [(text(e, "metadata", "namespace"), text(e, "metadata", "uid")) for e in executions]
    runs = [run for run in runs if all(run)]
    if runs:
        logger.info("pruning the checkpoint journals of %d execution(s)", len(runs))
        await state.governance.prune(runs)
