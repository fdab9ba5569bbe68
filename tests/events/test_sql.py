"""The event store's plain statements against their portable twins, on the same
PostgreSQL data (events/sql.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events import sql
from events.models import Event
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@parity(sql.types)
def test_both_read_the_same_types_of_one_tenants_events(tenant_a, tenant_b):
    for tenant, kind in [(tenant_a, "task.completed")] * 3 + [
        (tenant_a, "agent.state_changed"), (tenant_a, "task.failed"), (tenant_b, "beta.only"), (tenant_a, "a.first"),
    ]:  # fmt: skip
        Event.objects.create(tenant=tenant, type=kind, occurred_at=T0)
    everything = ["a.first", "agent.state_changed", "task.completed", "task.failed"]
    assert sql.types.plain(tenant_a.pk, 10) == sql.types.portable(tenant_a.pk, 10) == everything
    assert sql.types.plain(tenant_a.pk, 2) == sql.types.portable(tenant_a.pk, 2) == everything[:2]
    assert sql.types.plain(0, 10) == sql.types.portable(0, 10) == []
