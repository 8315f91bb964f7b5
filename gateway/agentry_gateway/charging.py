"""What a call is charged, however it ended: "failed" never means "free" when the provider may have
billed (docs/governance.md, "What a call is charged").

* An answer: its usage, priced with the cache reads and writes it reports, whether or not the client
  stayed to receive it.
* Each attempt that may have been billed and whose usage is unknown adds the call's estimate (its
  reservation: the input estimate and `max_tokens` of output, priced at the worst case of its cache
  breakpoints). An attempt may have been billed once the provider may have accepted the request:
  - it failed after some of its text reached the client (a stream cut off after text);
  - it failed after the provider's 2xx (an error event in the middle of the stream);
  - it failed without any HTTP answer once the request could have been sent (a connection cut, a
    read timeout): the provider may have done the work and its answer was lost;
  - it was still running when the call was cut (the call's deadline, the client going away).
  Not billed: an HTTP error answer (4xx, 5xx, 429, 529: the provider declined the work), a
  connection that was never made (refused, connect timeout), a hop skipped by its open breaker.
* Nothing billed and no answer: nothing is charged, the reservation is released.
"""

from __future__ import annotations

from typing import Literal

import httpx

from agentry_common.pricing import Price
from agentry_llm import ChatResponse, ProviderError

from .budgets import Amount, call_amount

Basis = Literal["usage", "estimate", "usage+estimate", "none"]
# Failures that prove the request never reached the provider.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


def may_have_billed(error: ProviderError, committed: bool) -> bool:
    """Whether the provider may have billed the attempt that failed with `error` (`committed`: some
    of its text reached the client)."""
    if committed:
        return True
    if error.status is not None:
        return error.status < 400  # an error after a 2xx: the provider was at work
    return not _never_sent(error)


def _never_sent(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _NEVER_SENT):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def usage_amount(model: str, response: ChatResponse, default: Price | None) -> Amount:
    """An answer's usage as budgets count it, at `model`'s price with its cache reads and writes."""
    usage = response.usage
    return call_amount(
        model,
        usage.input_tokens,
        usage.output_tokens,
        default=default,
        cache_read=usage.cache_read_tokens,
        cache_write=usage.cache_write_tokens,
        cache_write_1h=usage.cache_write_1h_tokens,
    )


def charge(answer: Amount | None, estimate: Amount, billed_unknown: int) -> tuple[Amount, Basis]:
    """The call's charge: the answer's usage (if any) plus the estimate for each attempt that may
    have been billed without usage; a call counts as one message whatever its attempts."""
    extra = Amount(estimate.tokens * billed_unknown, 0, estimate.cost_nanos * billed_unknown)
    if answer is not None:
        return answer + extra, ("usage+estimate" if billed_unknown else "usage")
    if billed_unknown:
        return Amount(extra.tokens, 1, extra.cost_nanos), "estimate"
    return Amount(), "none"
