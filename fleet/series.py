"""The metric store's time series: a tenant's fleet, or one agent, per chart step.

Per-minute rows serve an hour or less of a tenant's fleet (or a day of one agent); longer
ranges read the rollups (``fleet.rollups``), so no long range scans every agent's minutes.
Every read runs under a statement budget (``L10_METRICS_QUERY_BUDGET_MS``, a PostgreSQL
``statement_timeout``) and the metrics circuit breaker: when it fails or runs too long,
callers get ``MetricsUnavailable`` and show that, not an error page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pybreaker
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from core import breakers
from fleet import sql
from fleet.models import (
    FLEET_MINUTES_MARK,
    FLEET_MINUTES_SINCE,
    MetricHour,
    MetricMinute,
    RollupMark,
    TenantMetricBucket,
    TenantMetricMinute,
)

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


def window(step: timedelta, span: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) aligned to ``step``, ending with the last step that is over by ``now``.
    The step in progress is left out: a rate over a minute a third gone is a third of the
    rate, and would read as a drop (docs/architecture.md, "Fleet charts")."""
    step_s = int(step.total_seconds())
    end = datetime.fromtimestamp((int(now.timestamp()) // step_s) * step_s, tz=now.tzinfo)
    return end - span, end


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


def metrics_query(fn: Callable[[], T]) -> T:
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


# --- points ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Series:
    """Points from ``start`` on, one slot per ``step``; None where nothing was reported."""

    start: datetime
    step: timedelta
    slots: list[Point | None]


def _slot(at: datetime, step_s: int) -> datetime:
    return datetime.fromtimestamp(int(at.timestamp()) // step_s * step_s, tz=at.tzinfo)


def _fill(points: list[Point], start: datetime, end: datetime, step: timedelta) -> Series:
    by_time = {p.at: p for p in points}
    slots: list[Point | None] = []
    at = start
    while at < end:
        slots.append(by_time.get(at))
        at += step
    return Series(start, step, slots)


def _bucket_points(tenant_id: int, start: datetime, end: datetime, step: timedelta) -> list[Point]:
    rows = TenantMetricBucket.objects.filter(tenant_id=tenant_id, bucket__gte=start, bucket__lt=end).order_by("bucket")
    per_step: dict[datetime, Point] = {}
    step_s = int(step.total_seconds())
    for b in rows:
        at = _slot(b.bucket, step_s)
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


def _minute_points(tenant_id: int, start: datetime, end: datetime) -> list[Point]:
    """The fleet per minute: the minutes the rollups have folded (``TenantMetricMinute``,
    one row a minute, whatever the fleet's size), and the minute rows themselves
    (``fleet.sql.fleet_minutes``) only for the minutes outside them: the last minute or so
    since the latest fold, and any before the first."""
    marks = dict(
        RollupMark.objects.filter(name__in=(FLEET_MINUTES_SINCE, FLEET_MINUTES_MARK)).values_list("name", "done_until")
    )
    since, until = marks.get(FLEET_MINUTES_SINCE), marks.get(FLEET_MINUTES_MARK)
    if since is None or until is None or until <= start or since >= end:
        return [Point(*figures) for figures in sql.fleet_minutes(tenant_id, start, end)]
    low, high = max(start, since), min(end, until)
    points = [Point(*figures) for figures in sql.fleet_minutes(tenant_id, start, low)] if start < low else []
    folded = TenantMetricMinute.objects.filter(tenant_id=tenant_id, minute__gte=low, minute__lt=high).order_by("minute")
    points += [Point(row.minute, *(getattr(row, f) for f in TenantMetricMinute.FIGURES)) for row in folded]
    if high < end:
        points += [Point(*figures) for figures in sql.fleet_minutes(tenant_id, high, end)]
    return points


def fleet_series(tenant_id: int, rng: Range, now: datetime | None = None) -> Series:
    """The tenant's fleet over a range; MetricsUnavailable when the store fails."""
    start, end = window(rng.step, rng.span, now or timezone.now())

    def read() -> list[Point]:
        if rng.step == timedelta(minutes=1):
            return _minute_points(tenant_id, start, end)
        return _bucket_points(tenant_id, start, end, rng.step)

    return _fill(metrics_query(read), start, end, rng.step)


def agent_series(agent_id: UUID, rng: Range, now: datetime | None = None) -> Series:
    """One agent over a range: minute rows up to a day, hourly rollups beyond. Its p95
    fields hold its peaks (one agent has no spread across agents)."""
    hourly = rng.span > timedelta(hours=24)
    step = timedelta(hours=1) if hourly else rng.step
    start, end = window(step, rng.span, now or timezone.now())

    def read() -> list[Point]:
        fields = ("samples", "cpu_sum", "cpu_max", "memory_sum", "memory_max", "tokens", "requests", "errors")
        rows: Any
        if hourly:
            rows = MetricHour.objects.filter(agent_id=agent_id, hour__gte=start, hour__lt=end).values_list(
                "hour", *fields, "latency_p95_ms"
            )
        else:
            rows = MetricMinute.objects.filter(agent_id=agent_id, minute__gte=start, minute__lt=end).values_list(
                "minute", *fields, "latency_p95_ms"
            )
        minutes = step.total_seconds() / 60
        points: dict[datetime, Point] = {}
        step_s = int(step.total_seconds())
        for at, samples, cpu, cpu_max, mem, mem_max, tokens, requests, errors, latency in rows:
            slot = _slot(at, step_s)
            p = points.setdefault(slot, Point(slot, agents=1, minutes=minutes))
            p.samples += samples
            p.cpu_sum += cpu
            p.memory_sum += mem
            p.cpu_p95 = max(p.cpu_p95, cpu_max)
            p.memory_p95 = max(p.memory_p95, mem_max)
            p.tokens += tokens
            p.requests += requests
            p.errors += errors
            p.latency = max(p.latency, latency)
        return list(points.values())

    return _fill(metrics_query(read), start, end, step)


# --- the live tail ----------------------------------------------------------------------

# The step in progress is shown once this share of it has passed: earlier, a few agents'
# reports stand for the whole fleet.
PARTIAL_FROM = 1 / 6
STEPS = tuple(sorted({r.step for r in RANGES.values()}))


@dataclass(frozen=True)
class Tail:
    """The newest end of a fleet series at one step: the last whole step, and the step in
    progress so far (its rates over the time passed; None until ``PARTIAL_FROM`` of it has
    passed). The live overview sends it to the open pages (``dashboard.live``)."""

    step: timedelta
    whole_at: datetime
    whole: Point | None
    partial: Point | None
    elapsed: float  # the share of the step in progress that has passed, 0–1

    @property
    def series(self) -> Series:
        return Series(self.whole_at, self.step, [self.whole, self.partial])


def _merged(at: datetime, points: list[Point], minutes: float) -> Point | None:
    """Minutes folded into one point, as the rollups' buckets are folded into a chart step
    (``_bucket_points``): sums added, the worst minute's p95 and latency."""
    if not points:
        return None
    merged = Point(at, minutes=minutes)
    for p in points:
        merged.agents = max(merged.agents, p.agents)
        merged.samples += p.samples
        merged.cpu_sum += p.cpu_sum
        merged.memory_sum += p.memory_sum
        merged.cpu_p95 = max(merged.cpu_p95, p.cpu_p95)
        merged.memory_p95 = max(merged.memory_p95, p.memory_p95)
        merged.tokens += p.tokens
        merged.requests += p.requests
        merged.errors += p.errors
        merged.latency = max(merged.latency, p.latency)
    return merged


def fleet_tail(tenant_id: int, now: datetime | None = None) -> dict[int, Tail]:
    """The tenant's fleet at the newest end of every chart step (keyed by the step in
    seconds), read once from the per-minute figures; MetricsUnavailable when the store
    fails. A step's points are its minutes folded (``_merged``): for a step longer than a
    minute the p95 lines show its worst minute's p95 until the step's rollup is read on
    the next full load."""
    now = now or timezone.now()
    longest = int(max(STEPS).total_seconds())
    start = _slot(now, longest) - max(STEPS)
    end = _slot(now, 60) + timedelta(minutes=1)
    points = metrics_query(lambda: _minute_points(tenant_id, start, end))
    tails: dict[int, Tail] = {}
    for step in STEPS:
        step_s = int(step.total_seconds())
        current = _slot(now, step_s)
        previous = current - step
        passed = (now - current).total_seconds()
        elapsed = passed / step_s
        whole = _merged(previous, [p for p in points if previous <= p.at < current], step_s / 60)
        partial = None
        if elapsed >= PARTIAL_FROM:
            partial = _merged(current, [p for p in points if p.at >= current], passed / 60)
        tails[step_s] = Tail(step, previous, whole, partial, elapsed)
    return tails
