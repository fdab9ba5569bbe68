from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from core.config import L10Settings
from fleet import rollups
from fleet.models import MetricHour, MetricMinute, RollupMark, TenantMetricBucket
from tests.factories import AgentFactory

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
    assert RollupMark.objects.get().done_until == datetime(2026, 11, 25, 12, 5, tzinfo=UTC)


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
    assert len(callbacks) == 1  # the enqueue of fleet.tasks.rollup_range
    rollups.rollup_range(old, datetime.now(UTC))
    hour = old.replace(minute=0, second=0, microsecond=0)
    assert MetricHour.objects.get(agent__external_id="one", hour=hour).cpu_max == 40.0


def test_purge_keeps_what_retention_allows(fleet):
    rollups.rollup_recent(now=NOW)
    config = L10Settings(environ={"L10_METRICS_MINUTE_RETENTION_DAYS": "2", "L10_METRICS_ROLLUP_RETENTION_DAYS": "8"})
    with override_settings(L10=config):
        assert rollups.purge_metrics(now=NOW + timedelta(days=1)) == {"minutes": 0, "hours": 0, "buckets": 0}
        expired = MetricMinute.objects.filter(minute__lt=NOW + timedelta(minutes=1)).count()
        counts = rollups.purge_metrics(now=NOW + timedelta(days=2, minutes=1))
        assert counts["minutes"] == expired == 14 + 2
        assert MetricMinute.objects.count() == 0
        assert MetricHour.objects.count() == 3  # rollups live longer
        rollups.purge_metrics(now=NOW + timedelta(days=9))
    assert MetricHour.objects.count() == 0 and TenantMetricBucket.objects.count() == 0
