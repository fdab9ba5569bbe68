"""Burn rates and countdowns (costs/burn.py; docs/costs.md, "Countdowns"): a quota's rate
from its agent's last hour, and what the agent page says from a known rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from audit.services import Actor
from costs import burn, selectors
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from dashboard.selectors import QuotaBar, agent_detail

NOW = datetime(2026, 11, 20, 12, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("left", "rate", "said"),
    [
        (Decimal("4.50"), Decimal("2"), "runs out in ~2 h 15 min at the current rate"),
        (Decimal("0.01"), Decimal("60"), "runs out in ~1 min at the current rate"),  # 0.6 s: said as a minute
        (Decimal("100"), Decimal("1"), "runs out in ~4 d 4 h at the current rate"),
        (Decimal("0"), Decimal("2"), "used up"),
        (Decimal("-3"), Decimal("0"), "used up"),
        (Decimal("5"), Decimal("0"), "idle"),  # never "infinity"
        (Decimal("5"), Decimal("0.001"), "lasts"),  # 5,000 hours: past the reset
    ],
)
def test_a_countdown_from_a_known_rate(left, rate, said):
    assert burn.countdown(left, rate, NOW, NOW + timedelta(days=10), idle="idle", lasts="lasts") == said


def test_a_quota_bar_says_its_rate_and_when_it_runs_out_before_its_period_ends():
    def bar(kind, period, limit, used, per_hour):
        return QuotaBar(kind, period, limit, used, Decimal(per_hour), selectors.period_end(period, NOW), NOW)

    spend = bar("cost_usd", "day", 500, 200, 120)  # $3 left at $1.20 an hour: 2 h 30 min, before midnight
    assert (spend.rate, spend.countdown) == ("$1.20/h", "runs out in ~2 h 30 min at the current rate")
    hourly = bar("tokens", "hour", 100_000, 10_000, 60_000)  # 1 h 30 min at this rate: past 13:00
    assert (hourly.rate, hourly.countdown) == ("60,000 tokens/h", "lasts the hour at the current rate")
    assert bar("api_calls", "month", 10, 10, 0).countdown == "used up"
    assert bar("api_calls", "month", 10, 3, 0).countdown == "nothing is being used now"
    assert bar("cost_usd", "month", 10, 3, 0).countdown == "nothing is being spent now"


@pytest.mark.django_db
def test_an_agents_rates_are_its_last_hours_use_per_hour(tenant_a, agent_a, agent_b, admin_a):
    price_add(
        spec=PriceSpec("m", Decimal("1"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    agent_a.quotas = {"cost_usd": {"day": 1_000}, "tokens": {"hour": 10_000_000}}
    agent_a.save()
    for agent, minutes, tokens in [
        (agent_a, 10, 1_500_000), (agent_a, 50, 500_000),  # the last hour: $2.00, 2,000,000 tokens
        (agent_a, 70, 9_000_000),  # earlier today: counted in the day's use, not in the rate
        (agent_b, 5, 7_000_000),  # another tenant's agent
    ]:  # fmt: skip
        usage_record(
            tenant_id=agent.tenant_id, records=[NewUsage(agent.pk, "m", NOW - timedelta(minutes=minutes), tokens, 0)]
        )
    assert selectors.quota_rates(agent_a, NOW) == {"cost_usd": Decimal(200), "tokens": Decimal(2_000_000)}
    bars = {(q.kind, q.period): q for q in agent_detail(agent_a, now=NOW, events=None).quotas}
    cost = bars[("cost_usd", "day")]
    assert (cost.used, cost.rate) == (1_100, "$2.00/h") and cost.countdown == "used up"
    hourly = bars[("tokens", "hour")]  # 12:00 to now: 1,500,000 of 10,000,000; 8,500,000 left at 2,000,000 an hour
    assert hourly.used == 1_500_000 and hourly.countdown == "lasts the hour at the current rate"
