"""Reads of cost tracking: how much of each quota an agent has used.

Quota limits are stored on the agent as ``{"tokens": {"day": 100000}, "api_calls":
{"hour": 500}}`` (fleet); usage comes from the usage records. Periods are calendar
periods in UTC: the current hour, day and month.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce

from costs.models import UsageRecord
from fleet.models import Agent, QuotaPeriod, QuotaType


def period_start(period: str, now: datetime) -> datetime:
    if period == QuotaPeriod.HOUR:
        return now.replace(minute=0, second=0, microsecond=0)
    if period == QuotaPeriod.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == QuotaPeriod.MONTH:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown quota period {period!r}")


AMOUNT = {
    QuotaType.TOKENS: F("input_tokens") + F("output_tokens"),
    QuotaType.API_CALLS: F("api_calls"),
}


def quota_usage(agent: Agent, now: datetime) -> dict[str, dict[str, int]]:
    """Usage in each period that has a limit, in one aggregate query; {} without quotas."""
    wanted = [
        (kind, period)
        for kind, periods in (agent.quotas or {}).items()
        if kind in AMOUNT
        for period in periods
        if period in QuotaPeriod.values
    ]
    if not wanted:
        return {}
    earliest = min(period_start(period, now) for _, period in wanted)
    sums = {
        f"{kind}__{period}": Coalesce(Sum(AMOUNT[kind], filter=Q(occurred_at__gte=period_start(period, now))), 0)
        for kind, period in wanted
    }
    # Served by the (agent, occurred_at) index.
    totals = UsageRecord.objects.filter(agent=agent, occurred_at__gte=earliest).aggregate(**sums)
    usage: dict[str, dict[str, int]] = {}
    for kind, period in wanted:
        usage.setdefault(kind, {})[period] = int(totals[f"{kind}__{period}"])
    return usage
