"""Reads of cost tracking: how much of each quota an agent has used, and what usage cost.

Quota limits are stored on the agent as ``{"tokens": {"day": 100000}, "api_calls":
{"hour": 500}}`` (fleet); usage comes from the usage records. Periods are calendar
periods in UTC: the current hour, day and month.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Trunc

from core import money
from core.errors import ErrorCode, InterfaceError
from costs import burn, rollups
from costs.models import CostAgentDay, CostDirtyHour, CostHour, CostModelHour, UsageRecord
from fleet.models import Agent, QuotaPeriod, QuotaType


def period_start(period: str, now: datetime) -> datetime:
    if period == QuotaPeriod.HOUR:
        return now.replace(minute=0, second=0, microsecond=0)
    if period == QuotaPeriod.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == QuotaPeriod.MONTH:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown quota period {period!r}")


def period_end(period: str, now: datetime) -> datetime:
    """When the period that holds ``now`` ends: the next hour, day or month."""
    start = period_start(period, now)
    if period == QuotaPeriod.HOUR:
        return start + timedelta(hours=1)
    if period == QuotaPeriod.DAY:
        return start + timedelta(days=1)
    return (start + timedelta(days=32)).replace(day=1)


AMOUNT: dict[str, Any] = {
    QuotaType.TOKENS: F("input_tokens") + F("output_tokens"),
    QuotaType.API_CALLS: F("api_calls"),
    QuotaType.COST_USD: F("cost_usd"),  # dollars, known costs only; counted in cents (``_counted``)
}
MONEY = DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.PLACES)


def _counted(kind: str, total: Any) -> int:
    """A period's sum as its quota counts it: cents (rounded up) for cost, else as it is."""
    return money.quota_cents(Decimal(total)) if kind == QuotaType.COST_USD else int(total)


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
        f"{kind}__{period}": Coalesce(
            Sum(AMOUNT[kind], filter=Q(occurred_at__gte=period_start(period, now))),
            Value(Decimal(0)) if kind == QuotaType.COST_USD else Value(0),
            output_field=MONEY if kind == QuotaType.COST_USD else None,
        )
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
        usage.setdefault(kind, {})[period] = _counted(kind, totals[f"{kind}__{period}"])
    return usage


def quota_rates(agent: Agent, now: datetime) -> dict[str, Decimal]:
    """How fast the agent uses each kind it has a quota of, per hour, from the last
    ``burn.WINDOW`` (docs/costs.md, "Countdowns"); cost in cents, exactly. {} without quotas."""
    kinds = sorted({kind for kind, _ in _limited(agent.quotas)})
    if not kinds:
        return {}
    totals = UsageRecord.objects.filter(agent=agent, occurred_at__gte=now - burn.WINDOW, occurred_at__lt=now).aggregate(
        **{kind: Sum(AMOUNT[kind], output_field=MONEY if kind == QuotaType.COST_USD else None) for kind in kinds}
    )
    rates = {}
    for kind in kinds:
        amount = Decimal(totals[kind] or 0)
        rates[kind] = burn.per_hour(amount * 100 if kind == QuotaType.COST_USD else amount)
    return rates


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
        totals[values["agent_id"]] = {k: _counted(k.split("__")[0], values[k]) for k in sums}
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


# --- what usage cost ---------------------------------------------------------------------

MAX_RANGE = timedelta(days=400)


def cost_range(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """A range to sum: month to date by default; refused when it ends before it starts
    (E10606) or spans more than ``MAX_RANGE`` (E10607)."""
    end = end or now
    start = start or end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.tzinfo is None or end.tzinfo is None:
        raise InterfaceError(ErrorCode.COST_INVALID_QUERY, "Give times with a timezone (UTC).")
    if end < start:
        raise InterfaceError(ErrorCode.COST_BAD_RANGE, details={"field": "end"})
    if end - start > MAX_RANGE:
        raise InterfaceError(ErrorCode.COST_RANGE_TOO_LONG, details={"field": "start"})
    return start, end


@dataclass(frozen=True)
class CostBreakdown:
    """What usage cost over a range, by model: known costs summed; usage of models without
    a price counted apart (its cost is unknown, never zero)."""

    start: datetime
    end: datetime
    total_cost_usd: Decimal
    cost_by_model: dict[str, Decimal]
    tokens_by_model: dict[str, int]
    unpriced_records: int
    unpriced_models: list[str]


@dataclass
class Line:
    """One key's usage over a range (a model, an agent, a label): its known cost (None when
    none of its usage has a price), tokens, records and unpriced records."""

    key: str
    cost: Decimal | None = None
    tokens: int = 0
    records: int = 0
    unpriced: int = 0

    def add(self, amount: Decimal | None, tokens: int | None, records: int | None, unpriced: int | None) -> None:
        self.tokens += int(tokens or 0)
        self.records += int(records or 0)
        self.unpriced += int(unpriced or 0)
        if int(records or 0) - int(unpriced or 0) > 0:  # some of it has a price: its cost is known
            self.cost = (self.cost or Decimal(0)) + Decimal(amount or 0)


Span = tuple[datetime, datetime]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _minus(spans: list[Span], holes: Iterable[Span]) -> list[Span]:
    """``spans`` less ``holes``, in time order (both half-open)."""
    out = sorted(spans)
    for lo, hi in sorted(holes):
        kept: list[Span] = []
        for a, b in out:
            if hi <= a or lo >= b:
                kept.append((a, b))
                continue
            if a < lo:
                kept.append((a, lo))
            if hi < b:
                kept.append((hi, b))
        out = kept
    return out


def _within(field: str, spans: list[Span]) -> Q:
    found = Q(pk__in=[])
    for lo, hi in spans:
        found |= Q(**{f"{field}__gte": lo, f"{field}__lt": hi})
    return found


def _tiers(tenant_id: int, start: datetime, end: datetime, days: bool) -> tuple[list[Span], list[Span], list[Span]]:
    """[start, end) split into (whole days, whole hours, the rest): the days and hours the
    rollups hold (behind their mark, holding no dirty hour), and what only the records do
    (the partial hours at the range's ends, the newest hours, dirty hours). Days only when
    ``days``."""
    first_full = start if start == rollups.floor_hour(start) else rollups.floor_hour(start) + HOUR
    rolled_from, behind = rollups.rolled_span()
    if rolled_from is not None:  # the hours before the first run are in no rollup
        first_full = max(first_full, rolled_from)
    rolled_end = first_full if behind is None else max(first_full, min(rollups.floor_hour(end), behind))
    if rolled_end <= first_full:
        return [], [], [(start, end)]
    dirty = list(
        CostDirtyHour.objects.filter(tenant_id=tenant_id, hour__gte=first_full, hour__lt=rolled_end).values_list(
            "hour", flat=True
        )
    )
    rolled = _minus([(first_full, rolled_end)], [(h, h + HOUR) for h in dirty])
    whole_days: list[Span] = []
    if days:
        day = rollups.floor_day(first_full)
        day = day if day == first_full else day + DAY
        dirty_days = {rollups.floor_day(h) for h in dirty}
        while day + DAY <= rolled_end:
            if day not in dirty_days:
                if whole_days and whole_days[-1][1] == day:
                    whole_days[-1] = (whole_days[-1][0], day + DAY)
                else:
                    whole_days.append((day, day + DAY))
            day += DAY
    return whole_days, _minus(rolled, whole_days), _minus([(start, end)], rolled)


def sums(
    tenant_id: int, start: datetime, end: datetime, *, by: str = "model", agent_id: UUID | None = None,
    step: str | None = None,
) -> dict[str, Line]:  # fmt: skip
    """The tenant's (or one agent's) usage in [start, end) by ``by`` ("model" or
    "agent_id"), and by ``step`` ("hour" or "day", keys "<ISO start of step>|<key>") when
    given. Each part of the range from the smallest source that holds it (``_tiers``):
    whole days from the agents' day rows (by agent, not per hour), whole hours from the
    hour rows (the tenant's by-model rows by model), the rest from the records; the parts
    summed per key (docs/costs.md, "Rollups")."""
    if by not in ("model", "agent_id") or step not in (None, "hour", "day"):
        raise ValueError(f"costs are summed by model or agent_id, per hour or day, not {by!r} per {step!r}")
    keys = [by] if step is None else [by, "step"]

    def key_of(row: dict[str, Any]) -> str:
        return str(row[by]) if step is None else f"{row['step'].isoformat()}|{row[by]}"

    scope: dict[str, Any] = (
        {"tenant_id": tenant_id} if agent_id is None else {"tenant_id": tenant_id, "agent_id": agent_id}
    )
    whole_days, whole_hours, rest = _tiers(tenant_id, start, end, days=by == "agent_id" and step != "hour")
    hour_rows: QuerySet[Any] = (
        CostModelHour.objects.filter(tenant_id=tenant_id)
        if by == "model" and agent_id is None
        else CostHour.objects.filter(**scope)
    )
    rolled_sum = {
        "cost": Sum("cost_usd"), "tokens": Sum(F("input_tokens") + F("output_tokens")), "records": Sum("records"),
        "unpriced": Sum("unpriced_records"),
    }  # fmt: skip
    parts: list[QuerySet[Any]] = []
    if whole_days:
        days = CostAgentDay.objects.filter(**scope).filter(_within("day", whole_days))
        parts.append(_stepped(days, "day", step).values(*keys).annotate(**rolled_sum).order_by())
    if whole_hours:
        hours = hour_rows.filter(_within("hour", whole_hours))
        parts.append(_stepped(hours, "hour", step).values(*keys).annotate(**rolled_sum).order_by())
    if rest:
        records = UsageRecord.objects.filter(**scope).filter(_within("occurred_at", rest))
        parts.append(
            _stepped(records, "occurred_at", step)
            .values(*keys)
            .annotate(
                cost=Sum("cost_usd"), tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
                records=Count("pk"), unpriced=Count("pk", filter=Q(cost_usd__isnull=True)),
            )
            .order_by()
        )  # fmt: skip
    lines: dict[str, Line] = {}
    for part in parts:
        for row in part:
            lines.setdefault(key_of(row), Line(key_of(row))).add(
                row["cost"], row["tokens"], row["records"], row["unpriced"]
            )
    return lines


def _stepped(rows: QuerySet[Any], field: str, step: str | None) -> QuerySet[Any]:
    return rows if step is None else rows.annotate(step=Trunc(field, step, tzinfo=UTC))


def by_model_over_time(tenant_id: int, start: datetime, end: datetime, *, top: int = 5) -> dict[str, Any]:
    """The cost page's chart: each step's cost of the ``top`` most costly models and of the
    rest, stacked (each series the sum of itself and those before it), in dollars. A chart is
    a drawing: its values are floats of amounts rounded to the cent; every figure a person
    reads as text comes from ``Decimal``."""
    step = "hour" if end - start <= timedelta(days=2) else "day"
    lines = sums(tenant_id, start, end, step=step)
    totals: dict[str, Decimal] = {}
    for key, line in lines.items():
        model = key.split("|", 1)[1]
        totals[model] = totals.get(model, Decimal(0)) + (line.cost or Decimal(0))
    leaders = [m for m, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:top]]
    names = leaders + (["other models"] if len(totals) > top else [])
    width = timedelta(hours=1) if step == "hour" else timedelta(days=1)
    first = step_start(start, step)
    xs = []
    at = first
    while at < end:
        xs.append(at)
        at += width
    cells: dict[tuple[str, str], Decimal] = {}
    for key, line in lines.items():
        when, model = key.split("|", 1)
        name = model if model in leaders else "other models"
        cells[(when, name)] = cells.get((when, name), Decimal(0)) + (line.cost or Decimal(0))
    series = []
    running = [Decimal(0)] * len(xs)
    for name in names:
        running = [running[i] + cells.get((x.isoformat(), name), Decimal(0)) for i, x in enumerate(xs)]
        series.append({"label": name, "values": [float(money.cents(v)) for v in running]})
    return {
        "title": f"Cost by model, stacked, per {step}", "unit": "$", "x": [int(x.timestamp()) for x in xs],
        "series": series, "empty": "No usage with a price in this range.",
    }  # fmt: skip


def step_start(value: datetime, step: str) -> datetime:
    hour = value.replace(minute=0, second=0, microsecond=0)
    return hour if step == "hour" else hour.replace(hour=0)


def ranked(lines: dict[str, Line]) -> list[Line]:
    """Most cost first, then the unpriced, then by name."""
    return sorted(lines.values(), key=lambda line: (line.cost is None, -(line.cost or 0), -line.tokens, line.key))


def breakdown(tenant_id: int, start: datetime, end: datetime, *, agent_id: UUID | None = None) -> CostBreakdown:
    """What the tenant's (or one agent's) usage in [start, end) cost, by model (``sums``)."""
    return breakdown_of(start, end, sums(tenant_id, start, end, agent_id=agent_id))


def breakdown_of(start: datetime, end: datetime, models: dict[str, Line]) -> CostBreakdown:
    """The breakdown of by-model sums already read (``sums``), so a page that also lists the
    models reads them once."""
    lines = ranked(models)
    return CostBreakdown(
        start, end, sum((line.cost for line in lines if line.cost is not None), Decimal(0)),
        {line.key: line.cost for line in lines if line.cost is not None},
        {line.key: line.tokens for line in sorted(lines, key=lambda line: line.key)},
        sum(line.unpriced for line in lines), sorted(line.key for line in lines if line.unpriced),
    )  # fmt: skip


def tenant_costs(tenant_id: int, start: datetime, end: datetime) -> CostBreakdown:
    return breakdown(tenant_id, start, end)


def agent_costs(agent: Agent, start: datetime, end: datetime) -> CostBreakdown:
    return breakdown(agent.tenant_id, start, end, agent_id=agent.pk)


def projection(tenant_id: int, now: datetime, *, so_far: Decimal | None = None) -> tuple[Decimal, Decimal]:
    """(month to date, projected for the whole month at the month-to-date rate); ``so_far``:
    the month to date, when the caller has read it already."""
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    if so_far is None:
        so_far = breakdown(tenant_id, first, now).total_cost_usd
    elapsed = Decimal((now - first).total_seconds())
    if elapsed <= 0:
        return so_far, so_far
    whole = Decimal((following - first).total_seconds())
    return so_far, money.stored(so_far * whole / elapsed)
