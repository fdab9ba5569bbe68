"""Rollups of the per-minute metric rows, and their purge.

- ``MetricHour``: one row per agent per hour, for agent charts over days.
- ``TenantMetricBucket``: one row per tenant per 5 minutes (the whole fleet), for fleet
  charts over hours and days, so no range past an hour scans per-minute rows of every
  agent.

Both are recomputed from the minute rows and written with "insert or replace", so
running a rollup twice gives the same rows (idempotent). Each routine run re-rolls the
buckets since its mark minus a short look-back (samples arrive a little late); batches of
older samples (an agent catching up after an outage) mark their hours dirty
(``fleet.samples.metrics_record``, ``RollupDirtyHour``) and the backlog is worked through
later.

Every run is bounded, whatever the data (docs/operations.md, "Background work"):

1. The routine run rolls up at most ``L10_METRICS_BACKFILL_HOURS`` hours from its mark and
   moves the mark only as far as it got; the next run continues from there.
2. The backlog run (``rollup_backlog``) takes each tenant's oldest dirty hours, at most
   ``L10_METRICS_BACKFILL_HOURS`` per tenant and ``BACKLOG_TENANTS_PER_RUN`` times that per
   run, the tenant that has waited longest first; each hour rebuilt drops its mark, so the
   next run continues where this one stopped.
3. Nothing older than ``L10_METRICS_ROLLUP_RETENTION_DAYS`` is rebuilt: such marks are
   dropped unread, and the routine mark never reaches back further.
4. Purges delete in batches, at most ``PURGE_MAX_BATCHES`` per table per run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from core.stats import percentile
from core.timeutil import floor_minute
from fleet import sql
from fleet.models import (
    FLEET_MINUTES_MARK,
    FLEET_MINUTES_SINCE,
    MAX_FIELDS,
    SUM_FIELDS,
    MetricHour,
    MetricMinute,
    MetricSampleId,
    RollupDirtyHour,
    RollupMark,
    TenantMetricBucket,
    TenantMetricMinute,
)

log = logging.getLogger(__name__)

MARK = "metrics"
LOOKBACK = timedelta(minutes=10)
BUCKET = timedelta(minutes=TenantMetricBucket.BUCKET_MINUTES)
# The first run rolls up at most this far back; older rows are purged soon anyway.
FIRST_RUN_REACH = timedelta(days=8)
PURGE_BATCH = 10_000
# A purge run deletes at most this many batches per table; the next run (hourly) goes on.
PURGE_MAX_BATCHES = 100
# A backlog run serves at most this many tenants' worth of hours (each up to
# L10_METRICS_BACKFILL_HOURS), so many tenants catching up at once cannot make it long either.
BACKLOG_TENANTS_PER_RUN = 4


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def floor_bucket(value: datetime) -> datetime:
    minute = value.minute - value.minute % TenantMetricBucket.BUCKET_MINUTES
    return value.replace(minute=minute, second=0, microsecond=0)


def rollup_recent(*, now: datetime | None = None) -> int:
    """The routine run: roll up everything since the mark (less the look-back); returns rows written."""
    now = now or timezone.now()
    mark = RollupMark.objects.filter(name=MARK).first()
    if mark is not None:
        base = mark.done_until
        start = base - LOOKBACK
    else:
        oldest = MetricMinute.objects.aggregate(oldest=Min("minute"))["oldest"]
        base = start = max(oldest or now, now - FIRST_RUN_REACH)
    # Bounded: never before retention, and at most the backfill bound's hours past the mark
    # per run; a mark far behind (workers down for days) is caught up over several runs.
    floor = retention_start(now)
    start, base = max(start, floor), max(base, floor)
    end = min(now, floor_hour(base) + timedelta(hours=settings.L10.metrics_backfill_hours))
    written = rollup_range(start, end)
    RollupMark.objects.update_or_create(name=MARK, defaults={"done_until": floor_bucket(end)})
    fleet_minutes_folded(start, end)
    return written


def fleet_minutes_folded(start: datetime, end: datetime) -> None:
    """Record that the fleet minutes of [start, end) are folded (``rollup_range`` folds
    them): the first fold says where the folded minutes begin, every fold how far they
    reach, in whole minutes. Charts read the folded minutes between the two marks and the
    minute rows outside them (``fleet.series``)."""
    RollupMark.objects.get_or_create(name=FLEET_MINUTES_SINCE, defaults={"done_until": floor_minute(start)})
    RollupMark.objects.update_or_create(name=FLEET_MINUTES_MARK, defaults={"done_until": floor_minute(end)})


def retention_start(now: datetime) -> datetime:
    """The oldest hour rollups keep (``L10_METRICS_ROLLUP_RETENTION_DAYS``): nothing older is rebuilt."""
    return floor_hour(now - timedelta(days=settings.L10.metrics_rollup_retention_days))


def rollup_mark_dirty(*, tenant_id: int, times: Iterable[datetime], now: datetime | None = None) -> int:
    """Mark the hours of ``times`` for the backlog run to rebuild (inside retention and not in
    the future only); returns the hours marked."""
    now = now or timezone.now()
    oldest, newest = retention_start(now), floor_hour(now)
    # By whole hours since the epoch: a batch of a thousand late samples has few distinct
    # hours, and this finds them four times faster than flooring each timestamp.
    distinct = {int(t.timestamp()) // 3600 for t in times}
    hours = sorted(h for h in (datetime.fromtimestamp(n * 3600, UTC) for n in distinct) if oldest <= h <= newest)
    RollupDirtyHour.objects.bulk_create(
        [RollupDirtyHour(tenant_id=tenant_id, hour=hour, marked_at=now) for hour in hours],
        update_conflicts=True,
        unique_fields=["tenant", "hour"],
        update_fields=["marked_at"],
        batch_size=1000,
    )
    return len(hours)


def rollup_mark_range(start: datetime, end: datetime, *, now: datetime | None = None) -> int:
    """Mark dirty, for every tenant with minute rows there, the hours of [start, end) that
    still have minute rows to rebuild from (clamped to retention); returns the marks made."""
    now = now or timezone.now()
    first = max(floor_hour(start), retention_start(now))
    last = min(end, now)
    found = (
        MetricMinute.objects.filter(minute__gte=first, minute__lt=last)
        .annotate(h=TruncHour("minute"))
        .values_list("tenant_id", "h")
        .distinct()
    )
    by_tenant: dict[int, list[datetime]] = defaultdict(list)
    for tenant_id, hour in found:
        by_tenant[tenant_id].append(hour)
    return sum(rollup_mark_dirty(tenant_id=t, times=hours, now=now) for t, hours in by_tenant.items())


@dataclass
class BacklogRun:
    """What one backlog run did: hours rebuilt per tenant, rows written, marks dropped
    unread (outside retention), and whether marks are left for the next run."""

    hours: dict[int, int] = field(default_factory=dict)
    written: int = 0
    expired: int = 0
    more: bool = False


def rollup_backlog(*, now: datetime | None = None, per_tenant: int | None = None) -> BacklogRun:
    """Rebuild dirty hours, oldest first: at most ``per_tenant`` (``L10_METRICS_BACKFILL_HOURS``)
    per tenant and ``BACKLOG_TENANTS_PER_RUN`` tenants per run.

    1. Drop the marks outside retention: their rollups are purged anyway.
    2. Tenants by their oldest mark (the one waiting longest first).
    3. Per tenant, its oldest hours up to the bound, each rebuilt in its own transaction
       from that tenant's minute rows only; its mark is deleted unless it was marked
       again meanwhile (that newer mark stays for the next run).
    """
    now = now or timezone.now()
    per_tenant = per_tenant or settings.L10.metrics_backfill_hours
    run = BacklogRun()
    run.expired = RollupDirtyHour.objects.filter(hour__lt=retention_start(now)).delete()[0]
    waiting = (
        RollupDirtyHour.objects.values("tenant_id")
        .annotate(first=Min("marked_at"))
        .order_by("first", "tenant_id")
        .values_list("tenant_id", flat=True)
    )
    tenants = list(waiting[: BACKLOG_TENANTS_PER_RUN + 1])
    run.more = len(tenants) > BACKLOG_TENANTS_PER_RUN
    for tenant_id in tenants[:BACKLOG_TENANTS_PER_RUN]:
        marks = list(RollupDirtyHour.objects.filter(tenant_id=tenant_id).order_by("hour")[: per_tenant + 1])
        run.more = run.more or len(marks) > per_tenant
        for mark in marks[:per_tenant]:
            hour = mark.hour
            run.written += _rollup_hour(hour, hour + timedelta(hours=1), bucket_from=hour, tenant_id=tenant_id)
            RollupDirtyHour.objects.filter(pk=mark.pk, marked_at=mark.marked_at).delete()
            run.hours[tenant_id] = run.hours.get(tenant_id, 0) + 1
    return run


def rollup_range(start: datetime, end: datetime) -> int:
    """Recompute the hours and 5-minute buckets that overlap [start, end), an hour at a time."""
    written = 0
    hour = floor_hour(start)
    while hour < end:
        written += _rollup_hour(hour, min(end, hour + timedelta(hours=1)), bucket_from=max(floor_bucket(start), hour))
        hour += timedelta(hours=1)
    return written


@transaction.atomic
def _rollup_hour(hour: datetime, end: datetime, *, bucket_from: datetime, tenant_id: int | None = None) -> int:
    """Rebuild one hour's rollups: every tenant's, or ``tenant_id``'s only."""
    only = tenant_id  # the loops below reuse the name
    rows = MetricMinute.objects.all() if tenant_id is None else MetricMinute.objects.filter(tenant_id=tenant_id)
    # 1. Agent hours: the database groups the whole hour's minute rows per agent.
    per_agent = (
        rows.filter(minute__gte=hour, minute__lt=hour + timedelta(hours=1))
        .annotate(h=TruncHour("minute"))
        .values("agent_id", "tenant_id", "h")
        .annotate(**{f: Sum(f) for f in SUM_FIELDS}, **{f: Max(f) for f in MAX_FIELDS})
    )
    hours = []
    for row in per_agent:
        grouped: dict[str, Any] = dict(row)
        hours.append(
            MetricHour(
                agent_id=grouped["agent_id"],
                tenant_id=grouped["tenant_id"],
                hour=grouped["h"],
                **{f: grouped[f] for f in SUM_FIELDS + MAX_FIELDS},
            )
        )
    MetricHour.objects.bulk_create(
        hours,
        update_conflicts=True,
        unique_fields=["agent", "hour"],
        update_fields=list(SUM_FIELDS + MAX_FIELDS),
        batch_size=1000,
    )

    # 2. Tenant buckets: per agent per bucket first (for the p95 across agents), then per tenant.
    minutes = rows.filter(minute__gte=bucket_from, minute__lt=end).values_list(
        "tenant_id", "agent_id", "minute", *SUM_FIELDS, *MAX_FIELDS
    )
    agent_buckets: dict[tuple[int, Any, datetime], list[float]] = {}
    for tenant_id, agent_id, minute, *values in minutes:
        key = (tenant_id, agent_id, floor_bucket(minute))
        acc = agent_buckets.get(key)
        if acc is None:
            agent_buckets[key] = list(values)
            continue
        for i in range(len(SUM_FIELDS)):
            acc[i] += values[i]
        for i in range(len(SUM_FIELDS), len(values)):
            acc[i] = max(acc[i], values[i])
    fleets: dict[tuple[int, datetime], _FleetBucket] = defaultdict(_FleetBucket)
    for (tenant_id, _agent, bucket), values in agent_buckets.items():
        fleets[(tenant_id, bucket)].add(values)
    buckets = [
        TenantMetricBucket(
            tenant_id=tenant_id,
            bucket=bucket,
            agents=len(fleet.cpu),
            cpu_p95=percentile(fleet.cpu, 0.95),
            memory_p95=percentile(fleet.memory, 0.95),
            **dict(zip(SUM_FIELDS, fleet.sums, strict=True)),
            **dict(zip(MAX_FIELDS, fleet.maxes, strict=True)),
        )
        for (tenant_id, bucket), fleet in fleets.items()
    ]
    TenantMetricBucket.objects.bulk_create(
        buckets,
        update_conflicts=True,
        unique_fields=["tenant", "bucket"],
        update_fields=["agents", "cpu_p95", "memory_p95", *SUM_FIELDS, *MAX_FIELDS],
        batch_size=1000,
    )
    # 3. Fleet minutes: each tenant's minutes as its 1 h chart shows them.
    folded = fold_fleet_minutes(bucket_from, end, tenant_id=only)
    return len(hours) + len(buckets) + folded


def fold_fleet_minutes(start: datetime, end: datetime, *, tenant_id: int | None = None) -> int:
    """Store each tenant's fleet per minute of [start, end) (every tenant with minute rows
    there, or ``tenant_id``'s only) as ``fleet.sql.fleet_minutes`` computes it; returns
    the minutes written."""
    found = (
        [(tenant_id, figures) for figures in sql.fleet_minutes(tenant_id, start, end)]
        if tenant_id is not None
        else sql.tenants_minutes(start, end)
    )
    rows = [
        TenantMetricMinute(
            tenant_id=tenant, minute=figures.minute, **dict(zip(TenantMetricMinute.FIGURES, figures[1:], strict=True))
        )
        for tenant, figures in found
    ]
    TenantMetricMinute.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["tenant", "minute"],
        update_fields=list(TenantMetricMinute.FIGURES),
        batch_size=1000,
    )
    return len(rows)


@dataclass
class _FleetBucket:
    sums: list[float] = field(default_factory=lambda: [0.0] * len(SUM_FIELDS))
    maxes: list[float] = field(default_factory=lambda: [0.0] * len(MAX_FIELDS))
    cpu: list[float] = field(default_factory=list)  # each agent's average in the bucket
    memory: list[float] = field(default_factory=list)

    def add(self, agent_values: list[float]) -> None:
        for i in range(len(SUM_FIELDS)):
            self.sums[i] += agent_values[i]
        for i, value in enumerate(agent_values[len(SUM_FIELDS) :]):
            self.maxes[i] = max(self.maxes[i], value)
        samples = agent_values[0] or 1
        self.cpu.append(agent_values[1] / samples)
        self.memory.append(agent_values[2] / samples)


def purge_metrics(*, now: datetime | None = None) -> dict[str, int]:
    """Delete minute rows and rollups past their retention, in batches; returns counts."""
    now = now or timezone.now()
    minute_cutoff = now - timedelta(days=settings.L10.metrics_minute_retention_days)
    rollup_cutoff = now - timedelta(days=settings.L10.metrics_rollup_retention_days)
    return {
        "minutes": _purge(MetricMinute, "minute", minute_cutoff),
        "fleet_minutes": _purge(TenantMetricMinute, "minute", minute_cutoff),
        "hours": _purge(MetricHour, "hour", rollup_cutoff),
        "buckets": _purge(TenantMetricBucket, "bucket", rollup_cutoff),
        "sample_ids": _purge(MetricSampleId, "seen_at", minute_cutoff),
        "dirty_hours": _purge(RollupDirtyHour, "hour", rollup_cutoff),
    }


def _purge(
    model: Any, field: str, cutoff: datetime, *, max_batches: int = PURGE_MAX_BATCHES, batch: int = PURGE_BATCH
) -> int:
    """Delete rows before ``cutoff`` in batches, at most ``max_batches`` of them: a backlog
    of expired rows is worked off over several runs, never in one long one."""
    total = 0
    for _ in range(max_batches):
        ids = list(model.objects.filter(**{f"{field}__lt": cutoff}).values_list("pk", flat=True)[:batch])
        if not ids:
            break
        total += model.objects.filter(pk__in=ids).delete()[0]
    return total
