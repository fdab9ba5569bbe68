"""Events past L10_EVENT_RETENTION_DAYS are removed a batch at a time (events/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.config import L10Settings
from events import retention
from events.models import Event

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_events_past_the_retention_go_a_batch_at_a_time_and_the_rest_stay(tenant_a, tenant_b, agent_a, settings):
    settings.L10 = L10Settings(environ={"L10_EVENT_RETENTION_DAYS": "7"})
    for tenant in (tenant_a, tenant_b):
        for days in (30, 20, 9, 8, 6.9, 1):
            Event.objects.create(tenant=tenant, type="task.completed", occurred_at=NOW - timedelta(days=days))
    assert retention.purge(now=NOW, batch=3) == 8  # 3 + 3 + 2: three batches
    kept = sorted({(NOW - at).days for at in Event.objects.values_list("occurred_at", flat=True)})
    assert kept == [1, 6] and Event.objects.count() == 4
    assert retention.purge(now=NOW, batch=3) == 0


def test_a_purge_stops_after_its_batches_and_the_next_goes_on(tenant_a, settings):
    settings.L10 = L10Settings(environ={"L10_EVENT_RETENTION_DAYS": "1"})
    Event.objects.bulk_create(
        Event(tenant=tenant_a, type="x", occurred_at=NOW - timedelta(days=2, minutes=n)) for n in range(10)
    )
    assert retention.purge(now=NOW, batch=2, max_batches=3) == 6
    assert retention.purge(now=NOW, batch=2, max_batches=3) == 4 and not Event.objects.exists()
