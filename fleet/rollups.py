"""Rollups of the per-minute metric rows, and their purge.

- ``MetricHour``: one row per agent per hour, for agent charts over days.
- ``TenantMetricBucket``: one row per tenant per 5 minutes (the whole fleet), for fleet
  charts over hours and days, so no range past an hour scans per-minute rows of every
  agent.

Both are recomputed from the minute rows and written with "insert or replace", so
running a rollup twice gives the same rows (idempotent). Each routine run re-rolls the
buckets since its mark minus a short look-back (samples arrive a little late); batches of
older samples (an agent catching up after an outage) ask for their own range to be rolled
up again (``fleet.samples.metrics_record``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from core.stats import percentile
from fleet.models import MAX_FIELDS, SUM_FIELDS, MetricHour, MetricMinute, RollupMark, TenantMetricBucket

log = logging.getLogger(__name__)

MARK = "metrics"
LOOKBACK = timedelta(minutes=10)
BUCKET = timedelta(minutes=TenantMetricBucket.BUCKET_MINUTES)
# The first run rolls up at most this far back; older rows are purged soon anyway.
FIRST_RUN_REACH = timedelta(days=8)
PURGE_BATCH = 10_000


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
        start = mark.done_until - LOOKBACK
    else:
        oldest = MetricMinute.objects.aggregate(oldest=Min("minute"))["oldest"]
        start = max(oldest or now, now - FIRST_RUN_REACH)
    written = rollup_range(start, now)
    RollupMark.objects.update_or_create(name=MARK, defaults={"done_until": floor_bucket(now)})
    return written


def rollup_range(start: datetime, end: datetime) -> int:
    """Recompute the hours and 5-minute buckets that overlap [start, end), an hour at a time."""
    written = 0
    hour = floor_hour(start)
    while hour < end:
        written += _rollup_hour(hour, min(end, hour + timedelta(hours=1)), bucket_from=max(floor_bucket(start), hour))
        hour += timedelta(hours=1)
    return written


@transaction.atomic
def _rollup_hour(hour: datetime, end: datetime, *, bucket_from: datetime) -> int:
    # 1. Agent hours: the database groups the whole hour's minute rows per agent.
    per_agent = (
        MetricMinute.objects.filter(minute__gte=hour, minute__lt=hour + timedelta(hours=1))
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
    minutes = MetricMinute.objects.filter(minute__gte=bucket_from, minute__lt=end).values_list(
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
    return len(hours) + len(buckets)


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
        "hours": _purge(MetricHour, "hour", rollup_cutoff),
        "buckets": _purge(TenantMetricBucket, "bucket", rollup_cutoff),
    }


def _purge(model: Any, field: str, cutoff: datetime) -> int:
    total = 0
    while True:
        ids = list(model.objects.filter(**{f"{field}__lt": cutoff}).values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            return total
        total += model.objects.filter(pk__in=ids).delete()[0]
