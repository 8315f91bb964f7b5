"""The unpriced-model rule: a model without a price would cost 0 and escape a limit in USD, so a call
it may answer is refused where such a limit applies (unless the governance file sets
`unpricedModelPrice`, the price of every model without one)."""

from __future__ import annotations

from agentry_common import pricing
from agentry_common.governance import Action, Zone
from agentry_common.models import Provider as Flavour

from .budgets import Decision
from .config import GatewayConfig
from .ledger import Ledger, Subjects
from .routing import AUTO_MODEL, ModelNotAllowed, NoRoute, Router


def models(config: GatewayConfig, router: Router, model: str, protocols: tuple[Flavour, ...]) -> list[str]:
    """The models without a price that a call for `model` may be answered by (none when the
    governance file sets `unpricedModelPrice`)."""
    if config.default_price is not None:
        return []
    if model == AUTO_MODEL:  # any of the tiers may be picked
        tiers = (config.auto.light, config.auto.balanced, config.auto.strong)
        return list(dict.fromkeys(m for tier in tiers for m in models(config, router, tier, protocols)))
    found: list[str] = []
    for protocol in protocols:
        try:
            found += router.hop_models(model, protocol)
        except (NoRoute, ModelNotAllowed):
            continue
    return [m for m in dict.fromkeys(found or [model]) if not pricing.is_priced(m)]


def refusal(
    config: GatewayConfig,
    router: Router,
    ledger: Ledger,
    subjects: Subjects,
    model: str,
    protocols: tuple[Flavour, ...],
    priority: int,
) -> Decision | None:
    """A refusal when a model without a price would answer where a limit in USD applies. None when
    the model is priced or no such limit applies."""
    unpriced = models(config, router, model, protocols)
    limit = ledger.cost_limit(subjects) if unpriced else None
    if limit is None:
        return None
    reason = (
        f"model {', '.join(unpriced)} has no price in the pricing table and {limit}: a call on it "
        "would escape that limit; use a priced model, or set unpricedModelPrice in the gateway's "
        "governance file"
    )
    return Decision(Action.REFUSE, Zone.NORMAL, reason, priority, model)
