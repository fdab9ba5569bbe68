"""Reads of cost tracking: how much of each quota an agent has used.

Quota limits are stored on the agent as ``{"tokens": {"day": 100000}, "api_calls":
{"hour": 500}}`` (fleet); usage comes from the usage records. Periods are calendar
periods in UTC: the current hour, day and month.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

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


AMOUNT: dict[str, Any] = {
    QuotaType.TOKENS: F("input_tokens") + F("output_tokens"),
    QuotaType.API_CALLS: F("api_calls"),
}


def _limited(quotas: dict[str, dict[str, int]] | None) -> list[tuple[str, str]]:
    """The (kind, period) pairs of ``quotas`` that usage can be counted for."""
    return [
        (kind, period)
        for kind, periods in (quotas or {}).items()
        if kind in AMOUNT
        for period in periods
        if period in QuotaPeriod.values
    ]


def _period_sums(wanted: Iterable[tuple[str, str]], now: datetime) -> tuple[datetime, dict[str, Any]]:
    """The earliest period start of ``wanted``, and one filtered sum per (kind, period),
    named ``<kind>__<period>``: a single aggregate query counts them all."""
    pairs = list(wanted)
    earliest = min(period_start(period, now) for _, period in pairs)
    sums = {
        f"{kind}__{period}": Coalesce(Sum(AMOUNT[kind], filter=Q(occurred_at__gte=period_start(period, now))), 0)
        for kind, period in pairs
    }
    return earliest, sums


def quota_usage(agent: Agent, now: datetime) -> dict[str, dict[str, int]]:
    """Usage in each period that has a limit, in one aggregate query; {} without quotas."""
    wanted = _limited(agent.quotas)
    if not wanted:
        return {}
    earliest, sums = _period_sums(wanted, now)
    # Served by the (agent, occurred_at) index.
    totals = UsageRecord.objects.filter(agent=agent, occurred_at__gte=earliest).aggregate(**sums)
    usage: dict[str, dict[str, int]] = {}
    for kind, period in wanted:
        usage.setdefault(kind, {})[period] = int(totals[f"{kind}__{period}"])
    return usage


def quota_use_percent(tenant_id: int, now: datetime) -> dict[UUID, float]:
    """Each agent of the tenant that has quotas: its most used quota, in % of its limit (a
    limit of 0 counts as full). One aggregate query for all of them."""
    agents = list(Agent.objects.filter(tenant_id=tenant_id).exclude(quotas={}).values_list("pk", "quotas"))
    wanted = sorted({pair for _, quotas in agents for pair in _limited(quotas)})
    if not wanted:
        return {}
    earliest, sums = _period_sums(wanted, now)
    rows = (
        UsageRecord.objects.filter(tenant_id=tenant_id, occurred_at__gte=earliest).values("agent_id").annotate(**sums)
    )
    totals: dict[UUID, dict[str, int]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        totals[values["agent_id"]] = {k: int(values[k]) for k in sums}
    out: dict[UUID, float] = {}
    for pk, quotas in agents:
        used: dict[str, int] = totals.get(pk, {})
        shares = [
            100.0 if not limit else 100.0 * used.get(f"{kind}__{period}", 0) / limit
            for kind, periods in (quotas or {}).items()
            if kind in AMOUNT
            for period, limit in periods.items()
            if period in QuotaPeriod.values
        ]
        if shares:
            out[pk] = max(shares)
    return out
