"""Issue 18, the gateway's pure parts: unpriced models under budgets in USD, channel model
allow-lists, the run token's model chain, namespace- and installation-wide budgets."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from agentry_common import pricing
from agentry_common.governance import INSTALLATION_SUBJECT, Scope, budget_subjects
from agentry_common.models import Provider as Protocol
from agentry_common.tokens import Keyring, mint_run_token, verify
from agentry_gateway.budgets import (
    Amount,
    BudgetPolicy,
    Calendar,
    Thresholds,
    call_amount,
    estimate_call,
    run_policy,
)
from agentry_gateway.config import GatewayConfig
from agentry_gateway.ledger import MemoryLedger, Subjects
from agentry_gateway.routing import ModelNotAllowed, Router
from agentry_gateway.service import Gateway
from agentry_gateway.settings import Settings

pytestmark = pytest.mark.unit

KEYS = Keyring.single("s" * 32, "k")
CHANNELS: list[dict[str, Any]] = [
    {"name": "anthropic", "protocol": "anthropic"},
    {"name": "openai", "protocol": "openai"},
    {"name": "local", "protocol": "openai", "baseURL": "http://local:1234/v1", "models": ["qwen*"]},
]


def gateway(**extra: Any) -> Gateway:
    config = GatewayConfig.model_validate({"channels": CHANNELS, **extra})
    ledger = MemoryLedger(config.budgets, config.calendar, config.thresholds, config.keep_seconds)
    return Gateway(Settings(ledger="memory"), config, KEYS, ledger)


# -- pricing -----------------------------------------------------------------------------------------


def test_the_table_says_which_provider_publishes_a_model() -> None:
    assert pricing.published_by("anthropic", "claude-sonnet-4-6")
    assert pricing.published_by("anthropic", "claude-haiku-4-5-20251001")  # a snapshot
    assert not pricing.published_by("anthropic", "gpt-4.1")
    assert pricing.published_by("openai", "gpt-4.1-mini") and not pricing.published_by("openai", "qwen")
    assert pricing.PRICES == {**pricing.ANTHROPIC_PRICES, **pricing.OPENAI_PRICES}


def test_an_unpriced_model_costs_the_default_price_when_one_is_set() -> None:
    default = pricing.Price(Decimal("10"), Decimal("20"))
    assert call_amount("mystery", 1_000_000, 0).cost_nanos == 0
    assert call_amount("mystery", 1_000_000, 1_000_000, default=default).cost_usd == Decimal(30)
    # A priced model keeps its own price.
    assert call_amount("claude-sonnet-4-6", 1_000_000, 0, default=default).cost_usd == Decimal(3)
    assert estimate_call("mystery", 300, 1000, default).cost_nanos > 0


# -- unpriced models where a limit in USD applies -----------------------------------------------------


def test_an_unpriced_model_is_refused_only_where_a_usd_limit_applies() -> None:
    users = {"name": "users", "scope": "user", "limits": [{"window": "day", "costUSD": "5"}]}
    tokens = {"name": "tokens", "scope": "user", "limits": [{"window": "day", "tokens": 1000}]}
    subjects = Subjects.of(budget_subjects("team-a", "bot", "ex", "uid", "u1"))
    flavours = (Protocol.OPENAI,)
    routes = [{"model": "local-*", "chain": [{"channel": "local", "model": "qwen-7b"}]}]

    refusal = gateway(budgets=[users], routes=routes).unpriced_refusal(subjects, "local-x", flavours, 5)
    assert refusal is not None and not refusal.allowed
    assert "qwen-7b has no price" in refusal.reason and "policy users limits user u1 to $5" in refusal.reason
    assert "unpricedModelPrice" in refusal.reason
    # No limit in USD: nothing to escape. A priced model: nothing to refuse.
    assert gateway(budgets=[tokens], routes=routes).unpriced_refusal(subjects, "local-x", flavours, 5) is None
    assert gateway(budgets=[users]).unpriced_refusal(subjects, "gpt-4.1", flavours, 5) is None
    # A default price in the governance file: priced after all.
    priced = gateway(
        budgets=[users], routes=routes, unpricedModelPrice={"inputPerMTok": 1, "outputPerMTok": 2}
    )
    assert priced.unpriced_refusal(subjects, "local-x", flavours, 5) is None
    # A run's own limit in USD (the token's) counts too.
    own = Subjects.of(
        budget_subjects("team-a", "bot", "ex", "uid", "u1"), tuple(run_policy(None, Decimal(1)))
    )
    refused = gateway(routes=routes).unpriced_refusal(own, "local-x", flavours, 5)
    assert refused is not None and "policy run limits execution team-a/ex/uid" in refused.reason


# -- channel model allow-lists ------------------------------------------------------------------------


def test_a_channel_serves_its_providers_models_unless_it_lists_its_own() -> None:
    router = Router(
        GatewayConfig.model_validate(
            {
                "channels": CHANNELS,
                "routes": [
                    {"model": "local-*", "chain": [{"channel": "local", "model": "llama-3"}]},
                    {"model": "cross-*", "chain": [{"channel": "anthropic"}, {"channel": "openai"}]},
                ],
            }
        )
    )
    assert [h.label for h in router.chain("claude-sonnet-4-6", Protocol.ANTHROPIC)] == [
        "anthropic:claude-sonnet-4-6"
    ]
    with pytest.raises(ModelNotAllowed, match=r"'claude-mythical-9'.*anthropic models of the pricing table"):
        router.chain("claude-mythical-9", Protocol.ANTHROPIC)
    with pytest.raises(ModelNotAllowed, match=r"'gpt-4\.1'"):  # an OpenAI model on the Anthropic channel
        router.chain("gpt-4.1", Protocol.ANTHROPIC)
    # A model the route names for a channel is the admin's choice, whatever the channel's list.
    assert [h.label for h in router.chain("local-x", Protocol.OPENAI)] == ["local:llama-3"]
    # A hop that passes the asked model on to a channel that does not allow it is left out.
    with pytest.raises(ModelNotAllowed):
        router.chain("cross-1", Protocol.ANTHROPIC)


def test_explicit_channel_lists_are_patterns() -> None:
    config = GatewayConfig.model_validate({"channels": CHANNELS, "defaults": {"openai": "local"}})
    router = Router(config)
    assert [h.label for h in router.chain("qwen2.5-7b", Protocol.OPENAI)] == ["local:qwen2.5-7b"]
    with pytest.raises(ModelNotAllowed, match=r"allows qwen\*"):
        router.chain("gpt-4.1", Protocol.OPENAI)
    anything = config.model_copy(
        update={"channels": [c.model_copy(update={"models": ["*"]}) for c in config.channels]}
    )
    assert [h.label for h in Router(anything).chain("whatever", Protocol.OPENAI)] == ["local:whatever"]


# -- the run token's model chain ------------------------------------------------------------------------


def test_a_run_token_carries_the_agents_model_chain() -> None:
    def token(**kw: Any) -> str:
        return mint_run_token(KEYS, namespace="n", execution="e", agent="a", active_deadline_seconds=60, **kw)

    claims = verify(token(models=["claude-sonnet-4-6", "gpt-4.1", "claude-sonnet-4-6", ""]), KEYS)
    assert claims.models == ("claude-sonnet-4-6", "gpt-4.1")
    assert claims.allows_model("gpt-4.1") and not claims.allows_model("claude-opus-4-6")
    older = verify(token(), KEYS)  # minted without the claim: any model, as before
    assert older.models == () and older.allows_model("claude-opus-4-6")
    assert "mdl" not in older.to_wire()


# -- namespace and installation budgets ---------------------------------------------------------------


def test_subjects_name_their_namespace_and_the_installation() -> None:
    names = budget_subjects("team-a", "bot", "ex", "uid", None)
    assert (names.namespace, names.installation) == ("team-a", INSTALLATION_SUBJECT)
    subjects = Subjects(user="u", agent="team-b/bot", execution="team-b/ex")  # namespace from the agent
    assert (Scope.NAMESPACE, "team-b") in subjects.scopes()
    assert (Scope.INSTALLATION, "all") in subjects.scopes()


def test_installation_and_namespace_budgets_are_charged_and_decide() -> None:
    policies = [
        BudgetPolicy.model_validate(
            {"name": "everyone", "scope": "installation", "limits": [{"window": "day", "messages": 3}]}
        ),
        BudgetPolicy.model_validate(
            {
                "name": "team-a",
                "scope": "namespace",
                "match": "team-a",
                "limits": [{"window": "day", "tokens": 10**6}],
            }
        ),
    ]
    ledger = MemoryLedger(policies, Calendar(), Thresholds(), 86400)

    def subjects(ns: str, user: str) -> Subjects:
        return Subjects.of(budget_subjects(ns, "bot", "ex", "uid", user))

    async def scenario() -> list[bool]:
        allowed: list[bool] = []
        for ns, user in [("team-a", "u1"), ("team-b", "u2"), ("team-a", "u3"), ("team-c", "brand-new")]:
            rid, decision = await ledger.reserve(
                subjects(ns, user),
                estimate=Amount(tokens=10, messages=1),
                priority=5,
                model="m",
                cheaper=lambda m: None,
            )
            allowed.append(decision.allowed)
            if decision.allowed:
                await ledger.settle(subjects(ns, user), rid, Amount(tokens=10, messages=1))
        await ledger.close()
        return allowed

    ledger.settle_delay = 0
    assert asyncio.run(scenario()) == [True, True, True, False]  # the 4th call of the installation
    assert ledger.docs["installation:all"]["total"] == [30, 3, 0]
    assert ledger.docs["namespace:team-a"]["total"] == [20, 2, 0]
    assert "namespace:team-b" not in ledger.docs  # no budget applies to team-b: its document untouched


def test_shared_counters_are_not_touched_without_a_budget() -> None:
    ledger = MemoryLedger([], Calendar(), Thresholds(), 86400)
    scopes = ledger.scopes(Subjects.of(budget_subjects("team-a", "bot", "ex", "uid", "u1")))
    assert [s for s, _ in scopes] == [Scope.USER, Scope.AGENT, Scope.EXECUTION]


def test_auto_is_checked_by_its_tiers() -> None:
    users = {"name": "users", "scope": "user", "limits": [{"window": "day", "costUSD": "5"}]}
    subjects = Subjects.of(budget_subjects("team-a", "bot", "ex", "uid", "u1"))
    both = tuple(Protocol)
    assert gateway(budgets=[users]).unpriced_refusal(subjects, "auto", both, 5) is None  # priced tiers
    local = gateway(budgets=[users], auto={"light": "qwen-7b"}, defaults={"openai": "local"})
    refusal = local.unpriced_refusal(subjects, "auto", both, 5)
    assert refusal is not None and "qwen-7b has no price" in refusal.reason
