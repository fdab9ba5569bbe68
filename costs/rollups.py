"""Cost rollups (docs/costs.md, "Rollups"), each rebuilt whole from what it sums, so
running a rollup again gives the same rows (idempotent):

- ``CostHour``: per (tenant, agent, model, hour), from the usage records;
- ``CostModelHour``: per (tenant, model, hour), from the hour's ``CostHour`` rows: the
  tenant's summaries by model;
- ``CostAgentDay``: per (tenant, agent, day), from the day's ``CostHour`` rows: ranking
  the tenant's agents over days.

- The routine run (``rollup_recent``, every few minutes) rebuilds every hour with usage
  from its mark, less ``LOOKBACK``, to now, then the days of those hours, and moves the
  mark; at most ``MAX_HOURS`` a run, so a mark far behind is caught up over several runs.
- Usage that lands in an hour before the mark less the look-back (an agent catching up)
  marks that hour dirty (``mark_dirty``, at ingest and when usage is priced later); the
  run rebuilds the dirty hours and their days too, oldest first, and drops each mark it
  served.
- Summaries (``costs.selectors.sums``) read the rollups for whole hours (and days) behind
  the mark that hold no dirty hour, and the records for the rest: a total is always the
  records'.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db.models.functions import TruncHour
from django.utils import timezone

from costs import sql
from costs.models import CostDirtyHour, UsageRecord
from fleet.models import RollupMark
from tenancy.models import Tenant

MARK = "costs"
# Where the first routine run started: the hours before it are in no rollup (usage older
# than ``FIRST_RUN_REACH`` when the first run came), and summaries read their records.
FROM_MARK = "costs-from"
LOOKBACK = timedelta(hours=1)
MAX_HOURS = 48  # hours the routine run rebuilds at most per run
DIRTY_PER_RUN = 500
FIRST_RUN_REACH = timedelta(days=35)


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def mark_until() -> datetime | None:
    """Every hour before this (less ``LOOKBACK``) has been rolled up, unless marked dirty."""
    return RollupMark.objects.filter(name=MARK).values_list("done_until", flat=True).first()


def rolled_until(mark: datetime | None) -> datetime | None:
    """The end of the hours a summary may read from the rollups."""
    return None if mark is None else floor_hour(mark - LOOKBACK)


def rolled_span() -> tuple[datetime | None, datetime | None]:
    """(the first hour, the end of the hours) a summary may read from the rollups; (None,
    None) before the first run."""
    marks = dict(RollupMark.objects.filter(name__in=(MARK, FROM_MARK)).values_list("name", "done_until"))
    return marks.get(FROM_MARK), rolled_until(marks.get(MARK))


def floor_day(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def rebuild(tenant_id: int, hour: datetime) -> int:
    """The hour's rows (per agent and model, and per model) made again from its records;
    returns the hour rows written. Its day's rows are left to ``rebuild_days``."""
    return sql.rebuild_hour(tenant_id, hour)


def rebuild_days(pairs: Iterable[tuple[int, datetime]]) -> int:
    """The day rows of each (tenant, day) that holds one of the (tenant, hour) ``pairs``,
    made again from their hour rows; returns the days rebuilt."""
    days = sorted({(tenant_id, floor_day(hour)) for tenant_id, hour in pairs})
    for tenant_id, day in days:
        sql.rebuild_day(tenant_id, day)
    return len(days)


def rollup_recent(*, now: datetime | None = None) -> int:
    """The routine run: rebuild the hours with usage from the mark (less the look-back) on,
    at most ``MAX_HOURS``, and their days; move the mark as far as it got. Returns the hour
    rows written."""
    now = now or timezone.now()
    mark = mark_until()
    if mark is None:
        oldest = UsageRecord.objects.filter(occurred_at__gte=now - FIRST_RUN_REACH).order_by("occurred_at").first()
        start = floor_hour(oldest.occurred_at if oldest else now)
        RollupMark.objects.get_or_create(name=FROM_MARK, defaults={"done_until": start})
    else:
        start = floor_hour(mark - LOOKBACK)
    end = min(now, start + timedelta(hours=MAX_HOURS))
    # Each tenant's range of its (tenant, time) index, not the whole index: no index leads
    # with the time.
    tenants = list(Tenant.objects.values_list("pk", flat=True))
    hours = list(
        UsageRecord.objects.filter(tenant_id__in=tenants, occurred_at__gte=start, occurred_at__lt=end)
        .annotate(h=TruncHour("occurred_at", tzinfo=UTC))
        .values_list("tenant_id", "h")
        .order_by()  # the model's ordering would join the DISTINCT: an hour once per record
        .distinct()
    )
    written = sum(rebuild(tenant_id, hour) for tenant_id, hour in hours)
    rebuild_days(hours)
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
    marks = list(CostDirtyHour.objects.order_by("hour")[:limit])
    for mark in marks:
        rebuild(mark.tenant_id, mark.hour)
    rebuild_days((mark.tenant_id, mark.hour) for mark in marks)
    for mark in marks:  # after its day: a summary reads a dirty hour's day from its hours
        CostDirtyHour.objects.filter(pk=mark.pk, marked_at=mark.marked_at).delete()
    return len(marks)


def rollup(*, now: datetime | None = None) -> tuple[int, int]:
    """One run of the periodic task: (rows written by the routine run, dirty hours rebuilt)."""
    return rollup_recent(now=now), rollup_dirty()
