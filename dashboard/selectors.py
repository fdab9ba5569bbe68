"""Reads for the dashboard: the overview, the agent list and the agent detail.

Live figures come from the agents' latest reported metrics (columns on ``Agent``), never
from the time series. Charts read per-minute rows only for an hour or less of a tenant's
fleet (or a day of one agent); longer ranges read the rollups (``fleet.rollups``).
Time-series queries run under a statement budget and a circuit breaker: when they fail
or run too long, the chart panels say so and the rest of the page renders.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pybreaker
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, FloatField, Q, QuerySet
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from events.models import Event
from fleet.models import Agent, DesiredState, MetricHour, MetricMinute, ObservedState, TenantMetricBucket
from fleet.quotas import quota_usage
from fleet.rollups import percentile
from l10console import breakers

log = logging.getLogger(__name__)
T = TypeVar("T")


# --- ranges ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    span: timedelta
    step: timedelta  # the width of one chart point


RANGES = {
    r.key: r
    for r in (
        Range("15m", "15 min", timedelta(minutes=15), timedelta(minutes=1)),
        Range("1h", "1 hour", timedelta(hours=1), timedelta(minutes=1)),
        Range("6h", "6 hours", timedelta(hours=6), timedelta(minutes=5)),
        Range("24h", "24 hours", timedelta(hours=24), timedelta(minutes=5)),
        Range("7d", "7 days", timedelta(days=7), timedelta(minutes=30)),
    )
}
DEFAULT_RANGE = "1h"


def parse_range(value: str | None) -> Range:
    return RANGES.get(value or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])


# --- the budget for time-series queries ------------------------------------------------


class MetricsUnavailable(Exception):
    pass


@contextmanager
def _budget() -> Iterator[None]:
    """A transaction whose statements are cancelled past the metrics budget (PostgreSQL)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # work_mem: the fleet chart's percentile sorts stay in memory instead of spilling.
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true), set_config('work_mem', '32MB', true)",
                    [str(settings.L10.metrics_budget_ms)],
                )
        yield


def _metrics_query(fn: Callable[[], T]) -> T:
    """Run a time-series read under the budget and the metrics breaker."""

    def guarded() -> T:
        with _budget():
            return fn()

    try:
        return breakers.metrics.call(guarded)
    except pybreaker.CircuitBreakerError as exc:
        raise MetricsUnavailable("the metrics store is failing; retrying shortly") from exc
    except DatabaseError as exc:
        log.warning("metrics query failed: %s", exc)
        raise MetricsUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


# --- charts -----------------------------------------------------------------------------


@dataclass
class Chart:
    title: str
    unit: str
    x: list[int]
    series: list[dict[str, Any]]
    empty: str = "No samples in this range yet."

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "unit": self.unit, "x": self.x, "series": self.series, "empty": self.empty}


@dataclass
class Point:
    """One chart point: sums over the agents (and minutes) in it."""

    at: datetime
    agents: int = 0
    samples: int = 0
    cpu_sum: float = 0.0
    cpu_p95: float = 0.0
    memory_sum: float = 0.0
    memory_p95: float = 0.0
    tokens: int = 0
    requests: int = 0
    errors: int = 0
    latency: float = 0.0
    minutes: float = 1.0


def _round(value: float | None, places: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, places)


def _fill(points: list[Point], start: datetime, end: datetime, step: timedelta) -> list[Point | None]:
    """One slot per step from start to end: None where nothing was reported (a gap)."""
    by_time = {p.at: p for p in points}
    slots: list[Point | None] = []
    at = start
    while at < end:
        slots.append(by_time.get(at))
        at += step
    return slots


def charts_from_points(slots: list[Point | None], start: datetime, step: timedelta) -> dict[str, Chart]:
    x = [int((start + i * step).timestamp()) for i in range(len(slots))]

    def series(fn: Callable[[Point], float | None]) -> list[float | None]:
        return [None if p is None else _round(fn(p)) for p in slots]

    def mean(total: Callable[[Point], float]) -> Callable[[Point], float | None]:
        return lambda p: total(p) / p.samples if p.samples else None

    return {
        "cpu": Chart(
            "CPU", "%", x,
            [{"label": "mean", "values": series(mean(lambda p: p.cpu_sum))},
             {"label": "p95", "values": series(lambda p: p.cpu_p95)}],
        ),
        "memory": Chart(
            "Memory", "MB", x,
            [{"label": "mean", "values": series(mean(lambda p: p.memory_sum))},
             {"label": "p95", "values": series(lambda p: p.memory_p95)}],
        ),
        "tokens": Chart(
            "Tokens", "/min", x, [{"label": "tokens", "values": series(lambda p: p.tokens / p.minutes)}]
        ),
        "requests": Chart(
            "Requests", "/min", x,
            [{"label": "requests", "values": series(lambda p: p.requests / p.minutes)},
             {"label": "errors", "values": series(lambda p: p.errors / p.minutes)}],
        ),
        "latency": Chart(
            "Latency p95", "ms", x, [{"label": "worst p95", "values": series(lambda p: p.latency)}]
        ),
    }  # fmt: skip


def _window(rng: Range, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) aligned to the range's step, ending with the step that holds ``now``."""
    step_s = int(rng.step.total_seconds())
    end_ts = (int(now.timestamp()) // step_s + 1) * step_s
    end = datetime.fromtimestamp(end_ts, tz=now.tzinfo)
    return end - rng.span, end


FLEET_MINUTES_SQL = """
SELECT minute, COUNT(*), SUM(samples)::bigint, SUM(cpu_sum),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY cpu_sum / NULLIF(samples, 0)),
       SUM(memory_sum),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY memory_sum / NULLIF(samples, 0)),
       SUM(tokens)::bigint, SUM(requests)::bigint, SUM(errors)::bigint, MAX(latency_p95_ms)
FROM fleet_metricminute
WHERE tenant_id = %s AND minute >= %s AND minute < %s
GROUP BY minute
"""


def _fleet_minute_points(tenant_id: int, start: datetime, end: datetime) -> list[Point]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(FLEET_MINUTES_SQL, [tenant_id, start, end])
            return [Point(*row) for row in cursor.fetchall()]
    # Plainer for SQLite (small fleets): group in Python.
    rows = MetricMinute.objects.filter(tenant_id=tenant_id, minute__gte=start, minute__lt=end).values_list(
        "minute", "samples", "cpu_sum", "memory_sum", "tokens", "requests", "errors", "latency_p95_ms"
    )
    grouped: dict[datetime, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    points = []
    for minute, group in grouped.items():
        cpus = [r[2] / r[1] for r in group if r[1]]
        mems = [r[3] / r[1] for r in group if r[1]]
        points.append(
            Point(
                minute, len(group), sum(r[1] for r in group), sum(r[2] for r in group), percentile(cpus, 0.95),
                sum(r[3] for r in group), percentile(mems, 0.95), sum(r[4] for r in group), sum(r[5] for r in group),
                sum(r[6] for r in group), max(r[7] for r in group),
            )
        )  # fmt: skip
    return points


def _fleet_bucket_points(tenant_id: int, start: datetime, end: datetime, step: timedelta) -> list[Point]:
    rows = TenantMetricBucket.objects.filter(tenant_id=tenant_id, bucket__gte=start, bucket__lt=end).order_by("bucket")
    per_step: dict[datetime, Point] = {}
    step_s = int(step.total_seconds())
    for b in rows:
        at = datetime.fromtimestamp(int(b.bucket.timestamp()) // step_s * step_s, tz=b.bucket.tzinfo)
        p = per_step.setdefault(at, Point(at, minutes=step.total_seconds() / 60))
        p.agents = max(p.agents, b.agents)
        p.samples += b.samples
        p.cpu_sum += b.cpu_sum
        p.memory_sum += b.memory_sum
        # Several buckets in one point: show the worst bucket's p95.
        p.cpu_p95 = max(p.cpu_p95, b.cpu_p95)
        p.memory_p95 = max(p.memory_p95, b.memory_p95)
        p.tokens += b.tokens
        p.requests += b.requests
        p.errors += b.errors
        p.latency = max(p.latency, b.latency_p95_ms)
    return list(per_step.values())


def fleet_charts(tenant_id: int, rng: Range, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """The tenant's fleet charts for a range; MetricsUnavailable when the store fails."""
    start, end = _window(rng, now or timezone.now())

    def read() -> list[Point]:
        if rng.step == timedelta(minutes=1):
            return _fleet_minute_points(tenant_id, start, end)
        return _fleet_bucket_points(tenant_id, start, end, rng.step)

    points = _metrics_query(read)
    charts = charts_from_points(_fill(points, start, end, rng.step), start, rng.step)
    return {name: chart.as_json() for name, chart in charts.items()}


def agent_charts(agent_id: UUID, rng: Range, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """One agent's charts: minute rows up to a day, hourly rollups beyond."""
    start, end = _window(rng, now or timezone.now())
    hourly = rng.span > timedelta(hours=24)
    step = timedelta(hours=1) if hourly else rng.step

    def read() -> list[Point]:
        if hourly:
            rows: Any = MetricHour.objects.filter(agent_id=agent_id, hour__gte=start, hour__lt=end).values_list(
                "hour", "samples", "cpu_sum", "cpu_max", "memory_sum", "memory_max", "tokens", "requests", "errors",
                "latency_p95_ms",
            )  # fmt: skip
        else:
            rows = MetricMinute.objects.filter(agent_id=agent_id, minute__gte=start, minute__lt=end).values_list(
                "minute", "samples", "cpu_sum", "cpu_max", "memory_sum", "memory_max", "tokens", "requests", "errors",
                "latency_p95_ms",
            )  # fmt: skip
        minutes = step.total_seconds() / 60
        points: dict[datetime, Point] = {}
        step_s = int(step.total_seconds())
        for at, samples, cpu, cpu_max, mem, mem_max, tokens, requests, errors, latency in rows:
            slot = datetime.fromtimestamp(int(at.timestamp()) // step_s * step_s, tz=at.tzinfo)
            p = points.setdefault(slot, Point(slot, agents=1, minutes=minutes))
            p.samples += samples
            p.cpu_sum += cpu
            p.memory_sum += mem
            p.cpu_p95 = max(p.cpu_p95, cpu_max)  # one agent: its peak stands in for the p95 line
            p.memory_p95 = max(p.memory_p95, mem_max)
            p.tokens += tokens
            p.requests += requests
            p.errors += errors
            p.latency = max(p.latency, latency)
        return list(points.values())

    points = _metrics_query(read)
    charts = charts_from_points(_fill(points, start, end, step), start, step)
    charts["cpu"].series[1]["label"] = charts["memory"].series[1]["label"] = "peak"
    return {name: chart.as_json() for name, chart in charts.items()}


# --- the overview -----------------------------------------------------------------------


def pending_filter() -> Q:
    """Agents whose observed state does not (yet) match what they were told."""
    return (
        (Q(desired_state=DesiredState.RUNNING) & ~Q(observed_state=ObservedState.RUNNING))
        | (Q(desired_state=DesiredState.PAUSED) & ~Q(observed_state=ObservedState.PAUSED))
        | (Q(desired_state=DesiredState.STOPPED) & ~Q(observed_state=ObservedState.STOPPED))
    )


@dataclass
class AgentsSummary:
    total_count: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    pending_count: int = 0

    def count(self, state: str) -> int:
        return self.by_state.get(state, 0)

    @property
    def running_count(self) -> int:
        return self.count(ObservedState.RUNNING)

    @property
    def paused_count(self) -> int:
        return self.count(ObservedState.PAUSED)

    @property
    def stopped_count(self) -> int:
        return self.count(ObservedState.STOPPED)

    @property
    def error_count(self) -> int:
        return self.count(ObservedState.ERROR)

    @property
    def unresponsive_count(self) -> int:
        return self.count(ObservedState.UNRESPONSIVE)

    @property
    def starting_count(self) -> int:
        return self.count(ObservedState.STARTING)


@dataclass
class FleetResources:
    reporting: int = 0
    cpu_mean: float | None = None
    cpu_p95: float | None = None
    memory_mean: float | None = None
    memory_p95: float | None = None
    tokens_per_min: float = 0.0
    requests_per_min: float = 0.0
    errors_per_min: float = 0.0

    @property
    def error_rate(self) -> float | None:
        """Errors per request, 0..1."""
        return self.errors_per_min / self.requests_per_min if self.requests_per_min else None


@dataclass
class TopAgent:
    id: str
    name: str
    value: float


@dataclass
class Overview:
    tenant_id: int
    agents_summary: AgentsSummary
    resources: FleetResources
    top_cpu: list[TopAgent]
    top_error_rate: list[TopAgent]
    top_tokens: list[TopAgent]
    generated_at: datetime


def _fresh_cutoff(now: datetime) -> datetime:
    # Metrics older than three heartbeats describe an agent that has gone quiet.
    return now - timedelta(seconds=3 * settings.L10.agent_heartbeat_interval)


def agents_summary(tenant_id: int) -> AgentsSummary:
    # Served by the (tenant, observed_state) index; one small grouped result.
    rows = Agent.objects.filter(tenant_id=tenant_id).values("observed_state", "desired_state").annotate(n=Count("pk"))
    summary = AgentsSummary()
    for row in rows:
        observed, desired, n = row["observed_state"], row["desired_state"], row["n"]
        summary.total_count += n
        summary.by_state[observed] = summary.by_state.get(observed, 0) + n
        if observed != desired:
            summary.pending_count += n
    return summary


def fleet_resources(tenant_id: int, now: datetime) -> FleetResources:
    if connection.vendor == "postgresql":
        return _fleet_resources_postgres(tenant_id, now)
    return _fleet_resources_portable(tenant_id, now)


# One row, whatever the fleet's size: reading every live agent's numbers into Python to
# average them cost more than the rest of the overview. percentile_disc is the same
# nearest-rank percentile as fleet.rollups.percentile; aggregates skip NULLs, as it does.
FLEET_RESOURCES_SQL = (
    "SELECT count(*), avg(cpu_percent), percentile_disc(0.95) WITHIN GROUP (ORDER BY cpu_percent), "  # noqa: S608
    "avg(memory_mb), percentile_disc(0.95) WITHIN GROUP (ORDER BY memory_mb), "
    "coalesce(sum(tokens_per_min), 0), coalesce(sum(requests_per_min), 0), coalesce(sum(errors_per_min), 0) "
    f"FROM {Agent._meta.db_table} WHERE tenant_id = %s AND metrics_at >= %s"
)


def _fleet_resources_postgres(tenant_id: int, now: datetime) -> FleetResources:
    with connection.cursor() as cursor:
        cursor.execute(FLEET_RESOURCES_SQL, [tenant_id, _fresh_cutoff(now)])
        row = cursor.fetchone()
    reporting, cpu_mean, cpu_p95, memory_mean, memory_p95, tokens, requests, errors = row
    return FleetResources(
        reporting=reporting,
        cpu_mean=cpu_mean,
        cpu_p95=cpu_p95,
        memory_mean=memory_mean,
        memory_p95=memory_p95,
        tokens_per_min=tokens,
        requests_per_min=requests,
        errors_per_min=errors,
    )


def _fleet_resources_portable(tenant_id: int, now: datetime) -> FleetResources:
    # order_by(): the model's default ordering by name costs a sort nothing here needs.
    live = Agent.objects.filter(tenant_id=tenant_id, metrics_at__gte=_fresh_cutoff(now)).order_by()
    rows = list(live.values_list("cpu_percent", "memory_mb", "tokens_per_min", "requests_per_min", "errors_per_min"))
    cpus = [r[0] for r in rows if r[0] is not None]
    mems = [r[1] for r in rows if r[1] is not None]
    return FleetResources(
        reporting=len(rows),
        cpu_mean=sum(cpus) / len(cpus) if cpus else None,
        cpu_p95=percentile(cpus, 0.95) if cpus else None,
        memory_mean=sum(mems) / len(mems) if mems else None,
        memory_p95=percentile(mems, 0.95) if mems else None,
        tokens_per_min=sum(r[2] or 0.0 for r in rows),
        requests_per_min=sum(r[3] or 0.0 for r in rows),
        errors_per_min=sum(r[4] or 0.0 for r in rows),
    )


def _top(qs: QuerySet[Agent], column: str) -> list[TopAgent]:
    return [
        TopAgent(str(pk), name, value)
        for pk, name, value in qs.order_by(f"-{column}").values_list("pk", "name", column)[:10]
    ]


def top_agents(tenant_id: int, now: datetime) -> dict[str, list[TopAgent]]:
    """The ten reporting agents highest in CPU, error rate and tokens per minute."""
    live = Agent.objects.filter(tenant_id=tenant_id, metrics_at__gte=_fresh_cutoff(now))
    error_rate = F("errors_per_min") / NullIf(F("requests_per_min"), 0.0, output_field=FloatField())
    return {
        "cpu": _top(live.filter(cpu_percent__isnull=False), "cpu_percent"),
        "error_rate": _top(
            live.annotate(error_rate=Coalesce(error_rate, 0.0, output_field=FloatField())).filter(errors_per_min__gt=0),
            "error_rate",
        ),
        "tokens": _top(live.filter(tokens_per_min__gt=0), "tokens_per_min"),
    }


def overview(tenant_id: int, *, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    top = top_agents(tenant_id, now)
    return Overview(
        tenant_id=tenant_id,
        agents_summary=agents_summary(tenant_id),
        resources=fleet_resources(tenant_id, now),
        top_cpu=top["cpu"],
        top_error_rate=top["error_rate"],
        top_tokens=top["tokens"],
        generated_at=now,
    )


# --- the agent list ---------------------------------------------------------------------

SORTS = {
    "name": "name",
    "external_id": "external_id",
    "desired": "desired_state",
    "observed": "observed_state",
    "heartbeat": "last_heartbeat_at",
    "cpu": "cpu_percent",
    "memory": "memory_mb",
    "tokens": "tokens_per_min",
    "errors": "errors_per_min",
}


class BadFilter(ValueError):
    pass


def parse_labels(text: str) -> dict[str, str]:
    """``team=search,env=prod`` → {"team": "search", "env": "prod"}; BadFilter with a reason."""
    labels: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise BadFilter(f"“{part}” is not a label filter; write key=value, e.g. team=search.")
        if not all(c.isalnum() or c in "._/-" for c in key):
            raise BadFilter(f"“{key}” is not a label name; use letters, digits and . _ / -.")
        labels[key] = value
    return labels


@dataclass(frozen=True)
class AgentQuery:
    state: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    name: str | None = None
    sort: str = "name"
    descending: bool = False
    pending_only: bool = False


# What a row of the list shows: the rest of an agent (quotas, timestamps, …) is neither
# read nor cached with the page.
LIST_FIELDS = (
    "id",
    "tenant_id",
    "name",
    "external_id",
    "labels",
    "desired_state",
    "desired_changed_at",
    "desired_changed_by__username",
    "pause_reason",
    "pause_until",
    "pause_mode",
    "observed_state",
    "last_heartbeat_at",
    "cpu_percent",
    "memory_mb",
    "tokens_per_min",
    "errors_per_min",
)


def agent_list(tenant_id: int, query: AgentQuery) -> QuerySet[Agent]:
    agents = Agent.objects.filter(tenant_id=tenant_id)
    if query.state in ObservedState.values:
        agents = agents.filter(observed_state=query.state)
    for key, value in query.labels:
        agents = agents.filter(**{f"labels__{key}": value})
    if query.name:
        agents = agents.filter(Q(name__icontains=query.name) | Q(external_id__icontains=query.name))
    if query.pending_only:
        agents = agents.filter(pending_filter())
    column = F(SORTS.get(query.sort, "name"))
    order = column.desc(nulls_last=True) if query.descending else column.asc(nulls_last=True)
    return agents.order_by(order, "pk").select_related("desired_changed_by").only(*LIST_FIELDS)


def agents_by_ids(tenant_id: int, ids: Iterable[str]) -> QuerySet[Agent]:
    """The listed agents of the tenant, with what a row shows (a live page's changed rows)."""
    return (
        Agent.objects.filter(tenant_id=tenant_id, pk__in=list(ids))
        .select_related("desired_changed_by")
        .only(*LIST_FIELDS)
    )


# --- the agent detail ------------------------------------------------------------------


@dataclass
class QuotaBar:
    kind: str
    period: str
    limit: int
    used: int

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.used / self.limit) if self.limit else 100.0


@dataclass
class AgentDetail:
    agent: Agent
    quotas: list[QuotaBar]
    events: list[Event]
    control_events: list[Event]


def agent_detail(agent: Agent, *, now: datetime | None = None) -> AgentDetail:
    now = now or timezone.now()
    usage = quota_usage(agent, now)
    bars = [
        QuotaBar(kind, period, limit, usage.get(kind, {}).get(period, 0))
        for kind, periods in sorted((agent.quotas or {}).items())
        for period, limit in sorted(periods.items())
    ]
    events = list(Event.objects.filter(agent=agent).order_by("-occurred_at")[:15])
    control = list(Event.objects.filter(agent=agent, type__startswith="control.").order_by("-occurred_at")[:10])
    return AgentDetail(agent=agent, quotas=bars, events=events, control_events=control)
