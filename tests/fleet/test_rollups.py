from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings

from core.config import L10Settings
from fleet import rollups
from fleet.models import (
    FLEET_MINUTES_SINCE,
    MetricHour,
    MetricMinute,
    RollupDirtyHour,
    RollupMark,
    TenantMetricBucket,
    TenantMetricMinute,
)
from fleet.series import RANGES, fleet_series
from tests.factories import AgentFactory, TenantFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 12, 7, 30, tzinfo=UTC)


def minute_row(agent, minute: datetime, cpu: float, *, tokens: int = 10, samples: int = 1, memory: float = 100.0):
    return MetricMinute.objects.create(
        agent=agent,
        tenant=agent.tenant,
        minute=minute,
        samples=samples,
        cpu_sum=cpu * samples,
        cpu_max=cpu,
        memory_sum=memory * samples,
        memory_max=memory,
        tokens=tokens,
        requests=1,
        errors=0,
        latency_p95_ms=cpu * 2,
    )


@pytest.fixture
def fleet(tenant_a):
    one = AgentFactory.create(tenant=tenant_a, external_id="one")
    two = AgentFactory.create(tenant=tenant_a, external_id="two")
    # 11:58 and 11:59 in the previous hour; 12:00-12:06 in this one.
    for m in (58, 59):
        minute_row(one, datetime(2026, 11, 25, 11, m, tzinfo=UTC), cpu=10.0)
    for m in range(7):
        minute_row(one, datetime(2026, 11, 25, 12, m, tzinfo=UTC), cpu=20.0, samples=2)
        minute_row(two, datetime(2026, 11, 25, 12, m, tzinfo=UTC), cpu=80.0, memory=300.0)
    return one, two


def snapshot():
    hours = sorted(
        MetricHour.objects.values_list("agent__external_id", "hour", "samples", "cpu_sum", "cpu_max", "tokens")
    )
    buckets = sorted(
        TenantMetricBucket.objects.values_list(
            "bucket", "agents", "samples", "cpu_sum", "cpu_p95", "memory_p95", "tokens"
        )
    )
    return hours, buckets


def test_hours_and_buckets_are_rolled_up_from_the_minutes(fleet):
    rollups.rollup_recent(now=NOW)
    hours, buckets = snapshot()
    h11, h12 = datetime(2026, 11, 25, 11, tzinfo=UTC), datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert hours == [
        ("one", h11, 2, 20.0, 10.0, 20),
        ("one", h12, 14, 280.0, 20.0, 70),
        ("two", h12, 7, 560.0, 80.0, 70),
    ]
    by_bucket = {b[0]: b for b in buckets}
    first = by_bucket[datetime(2026, 11, 25, 12, 0, tzinfo=UTC)]  # 12:00-12:04, both agents
    assert first[1:] == (2, 5 * 2 + 5, 5 * 40.0 + 5 * 80.0, 80.0, 300.0, 100)
    assert by_bucket[datetime(2026, 11, 25, 12, 5, tzinfo=UTC)][1] == 2
    assert RollupMark.objects.get(name=rollups.MARK).done_until == datetime(2026, 11, 25, 12, 5, tzinfo=UTC)


def test_rolling_up_twice_gives_the_same_rows(fleet):
    rollups.rollup_recent(now=NOW)
    first = snapshot()
    rollups.rollup_recent(now=NOW)
    rollups.rollup_range(NOW - timedelta(hours=3), NOW)
    assert snapshot() == first
    assert MetricHour.objects.count() == 3


def test_a_late_sample_within_the_look_back_is_picked_up_by_the_next_run(fleet):
    one, _ = fleet
    rollups.rollup_recent(now=NOW)
    minute_row(one, datetime(2026, 11, 25, 12, 7, tzinfo=UTC), cpu=50.0)
    rollups.rollup_recent(now=NOW + timedelta(minutes=1))
    assert MetricHour.objects.get(agent=one, hour=datetime(2026, 11, 25, 12, tzinfo=UTC)).samples == 15


def test_an_old_batch_asks_for_its_range_to_be_rolled_up_again(
    fleet, token_a, client, django_capture_on_commit_callbacks
):
    rollups.rollup_recent(now=datetime.now(UTC))
    old = datetime.now(UTC) - timedelta(hours=2)
    body = {"samples": [{"external_id": "one", "at": old.isoformat(), "cpu_percent": 40.0}]}
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            "/api/v1/ingest/metrics", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token_a}"
        )
    assert response.status_code == 200
    assert len(callbacks) == 1  # the enqueue of fleet.tasks.rollup_backlog
    hour = old.replace(minute=0, second=0, microsecond=0)
    assert list(RollupDirtyHour.objects.values_list("tenant_id", "hour")) == [(fleet[0].tenant_id, hour)]
    run = rollups.rollup_backlog()
    assert run.hours == {fleet[0].tenant_id: 1} and not run.more
    assert MetricHour.objects.get(agent__external_id="one", hour=hour).cpu_max == 40.0
    assert not RollupDirtyHour.objects.exists()


def test_purge_keeps_what_retention_allows(fleet):
    rollups.rollup_recent(now=NOW)
    config = L10Settings(environ={"L10_METRICS_MINUTE_RETENTION_DAYS": "2", "L10_METRICS_ROLLUP_RETENTION_DAYS": "8"})
    with override_settings(L10=config):
        assert rollups.purge_metrics(now=NOW + timedelta(days=1)) == {
            "minutes": 0,
            "hours": 0,
            "buckets": 0,
            "sample_ids": 0,
            "dirty_hours": 0,
            "fleet_minutes": 0,
        }
        expired = MetricMinute.objects.filter(minute__lt=NOW + timedelta(minutes=1)).count()
        counts = rollups.purge_metrics(now=NOW + timedelta(days=2, minutes=1))
        assert counts["minutes"] == expired == 14 + 2
        assert MetricMinute.objects.count() == 0
        assert MetricHour.objects.count() == 3  # rollups live longer
        rollups.purge_metrics(now=NOW + timedelta(days=9))
    assert MetricHour.objects.count() == 0 and TenantMetricBucket.objects.count() == 0


# --- bounded, resumable catch-up (docs/operations.md, "Background work") -----------------


def hours_of_minutes(tenant, hours: int, *, agents: int = 2, end: datetime = NOW) -> list[datetime]:
    """Minute rows in each of the ``hours`` hours before ``end``'s hour (three per hour per
    agent); returns the minutes written."""
    made = [AgentFactory.create(tenant=tenant, external_id=f"{tenant.slug}-{n}") for n in range(agents)]
    top = end.replace(minute=0, second=0, microsecond=0)
    minutes = []
    for h in range(1, hours + 1):
        for m in (0, 17, 59):
            minute = top - timedelta(hours=h) + timedelta(minutes=m)
            minutes.append(minute)
            for n, agent in enumerate(made):
                minute_row(agent, minute, cpu=10.0 + n * 30 + h % 7, tokens=h * 10 + m)
    return minutes


def test_a_bounded_backlog_run_stops_at_its_bound_and_later_runs_finish_it_as_one_rebuild_would(tenant_a):
    minutes = hours_of_minutes(tenant_a, 10)
    assert rollups.rollup_mark_dirty(tenant_id=tenant_a.pk, times=minutes, now=NOW) == 10

    first = rollups.rollup_backlog(now=NOW, per_tenant=3)
    assert first.hours == {tenant_a.pk: 3} and first.more
    oldest = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=10)
    # Oldest first: the three oldest hours are rebuilt, the rest still marked.
    assert sorted(set(MetricHour.objects.values_list("hour", flat=True))) == [
        oldest + timedelta(hours=h) for h in range(3)
    ]
    assert RollupDirtyHour.objects.count() == 7

    runs = [first]
    while runs[-1].more:
        runs.append(rollups.rollup_backlog(now=NOW, per_tenant=3))
    assert [run.hours[tenant_a.pk] for run in runs] == [3, 3, 3, 1]
    assert not RollupDirtyHour.objects.exists()
    resumed = snapshot()

    # The same rows as one unbounded rebuild of the whole range.
    MetricHour.objects.all().delete()
    TenantMetricBucket.objects.all().delete()
    rollups.rollup_range(oldest, oldest + timedelta(hours=10))
    assert snapshot() == resumed
    assert len(resumed[0]) == 20


def test_one_tenants_huge_backlog_does_not_hold_up_anothers(tenant_a, tenant_b):
    big = hours_of_minutes(tenant_a, 40, agents=1)
    rollups.rollup_mark_dirty(tenant_id=tenant_a.pk, times=big, now=NOW - timedelta(minutes=1))
    small = hours_of_minutes(tenant_b, 1, agents=1)
    rollups.rollup_mark_dirty(tenant_id=tenant_b.pk, times=small, now=NOW)

    run = rollups.rollup_backlog(now=NOW, per_tenant=5)
    assert run.hours == {tenant_a.pk: 5, tenant_b.pk: 1}
    assert MetricHour.objects.filter(tenant=tenant_b).count() == 1
    assert not RollupDirtyHour.objects.filter(tenant=tenant_b).exists()


def test_a_backlog_run_serves_a_bounded_number_of_tenants(tenant_a):
    tenants = [TenantFactory.create(slug=f"t{n}") for n in range(rollups.BACKLOG_TENANTS_PER_RUN + 2)]
    for tenant in tenants:
        rollups.rollup_mark_dirty(tenant_id=tenant.pk, times=hours_of_minutes(tenant, 1, agents=1), now=NOW)
    first = rollups.rollup_backlog(now=NOW, per_tenant=1)
    assert len(first.hours) == rollups.BACKLOG_TENANTS_PER_RUN and first.more
    second = rollups.rollup_backlog(now=NOW, per_tenant=1)
    assert len(second.hours) == 2 and not second.more


def test_nothing_outside_retention_is_marked_or_rebuilt(tenant_a):
    agent = AgentFactory.create(tenant=tenant_a, external_id="old")
    epoch = datetime(1970, 1, 1, 0, 5, tzinfo=UTC)
    minute_row(agent, epoch, cpu=50.0)
    minute_row(agent, NOW - timedelta(hours=2), cpu=50.0)
    # The samples' hours: 1970 is outside retention, one in the future is not yet due.
    marked = rollups.rollup_mark_dirty(
        tenant_id=tenant_a.pk, times=[epoch, NOW - timedelta(hours=2), NOW + timedelta(days=3)], now=NOW
    )
    assert marked == 1
    # A mark left from before (or made with a longer retention) is dropped unread.
    RollupDirtyHour.objects.create(tenant=tenant_a, hour=epoch.replace(minute=0), marked_at=NOW)
    run = rollups.rollup_backlog(now=NOW)
    assert run.expired == 1 and run.hours == {tenant_a.pk: 1}
    assert not MetricHour.objects.filter(hour__year=1970).exists()
    # A whole range back to 1970 (a task queued by an older release) marks only what retention keeps.
    assert rollups.rollup_mark_range(epoch, NOW, now=NOW) == 1
    assert list(RollupDirtyHour.objects.values_list("hour", flat=True)) == [
        (NOW - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    ]


def test_the_routine_run_catches_up_a_mark_far_behind_a_bounded_step_at_a_time(tenant_a):
    config = L10Settings(environ={"L10_METRICS_BACKFILL_HOURS": "6", "L10_METRICS_ROLLUP_RETENTION_DAYS": "8"})
    hours_of_minutes(tenant_a, 3, agents=1)
    RollupMark.objects.create(name=rollups.MARK, done_until=NOW - timedelta(days=30))
    with override_settings(L10=config):
        rollups.rollup_recent(now=NOW)
        start = (NOW - timedelta(days=8)).replace(minute=0, second=0, microsecond=0)
        # Not from 30 days back (outside retention), and six hours at most.
        assert RollupMark.objects.get(name=rollups.MARK).done_until == start + timedelta(hours=6)
        runs = 1
        while RollupMark.objects.get(name=rollups.MARK).done_until < rollups.floor_bucket(NOW):
            rollups.rollup_recent(now=NOW)
            runs += 1
    assert runs == 8 * 4 + 1  # 8 days of 6-hour steps, and the hour in progress
    assert MetricHour.objects.count() == 3


def test_a_purge_run_deletes_a_bounded_number_of_batches_and_the_next_goes_on(tenant_a):
    agent = AgentFactory.create(tenant=tenant_a, external_id="purged")
    for m in range(25):
        minute_row(agent, NOW - timedelta(days=5, minutes=m), cpu=1.0)
    cutoff = NOW - timedelta(days=3)
    assert rollups._purge(MetricMinute, "minute", cutoff, max_batches=2, batch=10) == 20
    assert MetricMinute.objects.count() == 5
    assert rollups._purge(MetricMinute, "minute", cutoff, max_batches=2, batch=10) == 5
    assert not MetricMinute.objects.exists()


# --- fleet minutes: the 1 h chart from folded minutes ---------------------------------


def fleet_chart(tenant_id: int, now: datetime) -> list[tuple[Any, ...]]:
    series = fleet_series(tenant_id, RANGES["1h"], now=now)
    return [
        (p.at, p.agents, p.samples, p.cpu_sum, p.cpu_p95, p.memory_p95, p.tokens, p.latency)
        for p in series.slots
        if p is not None
    ]


def test_the_fleet_chart_from_folded_minutes_is_the_chart_from_the_minute_rows(fleet, tenant_b):
    # A second tenant with its own rows: a fold is per tenant.
    other = AgentFactory.create(tenant=tenant_b, external_id="b-1")
    minute_row(other, datetime(2026, 11, 25, 12, 3, tzinfo=UTC), cpu=99.0)
    later = NOW + timedelta(seconds=40)
    live = fleet_chart(fleet[0].tenant_id, later)
    assert len(live) == 9
    rollups.rollup_recent(now=NOW)
    folded = TenantMetricMinute.objects.filter(tenant_id=fleet[0].tenant_id)
    assert folded.count() == 9 and TenantMetricMinute.objects.filter(tenant_id=tenant_b.pk).count() == 1
    assert fleet_chart(fleet[0].tenant_id, later) == live
    # The minutes before the mark come from the folded rows, not from the minute rows.
    folded.filter(minute=datetime(2026, 11, 25, 12, 3, tzinfo=UTC)).update(tokens=12345)
    assert 12345 in [point[6] for point in fleet_chart(fleet[0].tenant_id, later)]


def test_minutes_after_the_latest_fold_and_before_the_first_are_read_from_the_minute_rows(fleet):
    one, _ = fleet
    rollups.rollup_recent(now=NOW)  # folded from 11:50 (the look-back) to 12:07
    RollupMark.objects.filter(name=FLEET_MINUTES_SINCE).update(done_until=datetime(2026, 11, 25, 12, 1, tzinfo=UTC))
    TenantMetricMinute.objects.filter(minute__lt=datetime(2026, 11, 25, 12, 1, tzinfo=UTC)).delete()
    # A minute after the mark: on the chart at once, from its rows.
    minute_row(one, datetime(2026, 11, 25, 12, 7, tzinfo=UTC), cpu=50.0)
    chart = fleet_chart(one.tenant_id, NOW + timedelta(seconds=40))
    minutes = [point[0].minute for point in chart]
    assert minutes == [58, 59, 0, 1, 2, 3, 4, 5, 6, 7]


def test_a_late_sample_is_folded_again_by_the_backlog(fleet):
    one, _ = fleet
    rollups.rollup_recent(now=NOW)
    minute_row(one, datetime(2026, 11, 25, 11, 30, tzinfo=UTC), cpu=70.0)
    # Before the backlog run the minute is not in the folded rows...
    assert not TenantMetricMinute.objects.filter(minute=datetime(2026, 11, 25, 11, 30, tzinfo=UTC)).exists()
    rollups.rollup_mark_dirty(tenant_id=one.tenant_id, times=[datetime(2026, 11, 25, 11, 30, tzinfo=UTC)], now=NOW)
    rollups.rollup_backlog(now=NOW)
    # ...and after it, it is, as the minute rows say.
    row = TenantMetricMinute.objects.get(minute=datetime(2026, 11, 25, 11, 30, tzinfo=UTC))
    assert (row.agents, row.cpu_sum, row.cpu_p95) == (1, 70.0, 70.0)


def test_folded_minutes_are_purged_with_the_minute_rows(fleet):
    rollups.rollup_recent(now=NOW)
    assert TenantMetricMinute.objects.exists()
    counts = rollups.purge_metrics(now=NOW + timedelta(days=30))
    assert counts["fleet_minutes"] == 9 and not TenantMetricMinute.objects.exists()
