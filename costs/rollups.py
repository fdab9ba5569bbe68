"""Hourly cost rollups (docs/costs.md, "Rollups"): one ``CostHour`` per (tenant, agent,
model, hour), rebuilt whole from the usage records, so running a rollup again gives the
same rows (idempotent).

- The routine run (``rollup_recent``, every few minutes) rebuilds every hour with usage
  from its mark, less ``LOOKBACK``, to now, and moves the mark; at most ``MAX_HOURS`` a run,
  so a mark far behind is caught up over several runs.
- Usage that lands in an hour before the mark less the look-back (an agent catching up)
  marks that hour dirty (``mark_dirty``, at ingest and when usage is priced later); the
  run rebuilds the dirty hours too, oldest first, and drops each mark it served.
- Summaries (``costs.selectors.breakdown``) read the rollups for whole hours behind the
  mark that are not dirty, and the records for the rest: a total is always the records'.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone

from core import money
from costs.models import CostDirtyHour, CostHour, UsageRecord
from fleet.models import RollupMark

MARK = "costs"
LOOKBACK = timedelta(hours=1)
MAX_HOURS = 48  # hours the routine run rebuilds at most per run
DIRTY_PER_RUN = 500
FIRST_RUN_REACH = timedelta(days=35)
MONEY = DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.PLACES)


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def mark_until() -> datetime | None:
    """Every hour before this (less ``LOOKBACK``) has been rolled up, unless marked dirty."""
    return RollupMark.objects.filter(name=MARK).values_list("done_until", flat=True).first()


def rolled_until(mark: datetime | None) -> datetime | None:
    """The end of the hours a summary may read from the rollups."""
    return None if mark is None else floor_hour(mark - LOOKBACK)


def rebuild(tenant_id: int, hour: datetime) -> int:
    """The hour's rows, made again from its records; returns the rows written."""
    end = hour + timedelta(hours=1)
    sums = (
        UsageRecord.objects.filter(tenant_id=tenant_id, occurred_at__gte=hour, occurred_at__lt=end)
        .values("agent_id", "model")
        .annotate(
            n=Count("pk"), inp=Sum("input_tokens"), out=Sum("output_tokens"), cached=Sum("cached_input_tokens"),
            calls=Sum("api_calls"), cost=Coalesce(Sum("cost_usd"), Value(Decimal(0)), output_field=MONEY),
            unpriced=Count("pk", filter=Q(cost_usd__isnull=True)),
        )
        .order_by()
    )  # fmt: skip
    rows = [
        CostHour(
            tenant_id=tenant_id,
            agent_id=s["agent_id"],
            model=s["model"],
            hour=hour,
            records=s["n"],
            input_tokens=s["inp"],
            output_tokens=s["out"],
            cached_input_tokens=s["cached"],
            api_calls=s["calls"],
            cost_usd=s["cost"],
            unpriced_records=s["unpriced"],
        )
        for s in sums
    ]
    with transaction.atomic():
        CostHour.objects.filter(tenant_id=tenant_id, hour=hour).delete()
        CostHour.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def rollup_recent(*, now: datetime | None = None) -> int:
    """The routine run: rebuild the hours with usage from the mark (less the look-back) on,
    at most ``MAX_HOURS``; move the mark as far as it got. Returns the rows written."""
    now = now or timezone.now()
    mark = mark_until()
    if mark is None:
        oldest = UsageRecord.objects.filter(occurred_at__gte=now - FIRST_RUN_REACH).order_by("occurred_at").first()
        start = floor_hour(oldest.occurred_at if oldest else now)
    else:
        start = floor_hour(mark - LOOKBACK)
    end = min(now, start + timedelta(hours=MAX_HOURS))
    hours = (
        UsageRecord.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
        .annotate(h=TruncHour("occurred_at", tzinfo=UTC))
        .values_list("tenant_id", "h")
        .order_by()  # the model's ordering would join the DISTINCT: an hour once per record
        .distinct()
    )
    written = sum(rebuild(tenant_id, hour) for tenant_id, hour in hours)
    RollupMark.objects.update_or_create(name=MARK, defaults={"done_until": end})
    return written


def mark_dirty(tenant_id: int, times: Iterable[datetime], *, now: datetime | None = None) -> int:
    """Mark the hours of ``times`` that the routine run has passed; returns how many. Usage
    of the last hour or so (nearly all of it) never is: the mark is read only for older."""
    now = now or timezone.now()
    times = list(times)
    if not times or min(times) >= floor_hour(now - LOOKBACK):
        return 0
    behind = rolled_until(mark_until())
    if behind is None:
        return 0
    distinct = {int(t.timestamp()) // 3600 for t in times}
    hours = sorted(h for h in (datetime.fromtimestamp(n * 3600, UTC) for n in distinct) if h < behind)
    CostDirtyHour.objects.bulk_create(
        [CostDirtyHour(tenant_id=tenant_id, hour=hour, marked_at=now) for hour in hours],
        update_conflicts=True, unique_fields=["tenant", "hour"], update_fields=["marked_at"],
    )  # fmt: skip
    return len(hours)


def rollup_dirty(*, limit: int = DIRTY_PER_RUN) -> int:
    """Rebuild the dirty hours, oldest first, at most ``limit``; a mark made again while its
    hour was rebuilt stays for the next run. Returns the hours rebuilt."""
    done = 0
    for mark in CostDirtyHour.objects.order_by("hour")[:limit]:
        rebuild(mark.tenant_id, mark.hour)
        CostDirtyHour.objects.filter(pk=mark.pk, marked_at=mark.marked_at).delete()
        done += 1
    return done


def rollup(*, now: datetime | None = None) -> tuple[int, int]:
    """One run of the periodic task: (rows written by the routine run, dirty hours rebuilt)."""
    return rollup_recent(now=now), rollup_dirty()
