"""One tenant's catch-up cannot delay another tenant's control: real Celery workers, one
per queue as in production, and a backfill held up for real by a row lock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from audit.services import Actor
from control.bulk import bulk_select, bulk_start
from control.models import Batch, ItemOutcome
from control.rules import Action
from core import runner
from fleet import rollups
from fleet.models import Agent, DesiredState, MetricHour, MetricMinute, ObservedState, RollupDirtyHour
from tests.conftest import celery_worker, wait_for
from tests.factories import AgentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


@contextlib.contextmanager
def row_locked(hour: MetricHour) -> Iterator[psycopg.Connection]:
    """A second connection holding ``hour``'s row lock until the block ends."""
    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"], port=s["PORT"], dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"]
    ) as holder:
        holder.execute(f"SELECT 1 FROM {MetricHour._meta.db_table} WHERE id = %s FOR UPDATE", [hour.pk])  # noqa: S608
        try:
            yield holder
        finally:
            holder.rollback()


def waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            [connection.settings_dict["NAME"]],
        )
        return int(cursor.fetchone()[0])


def test_a_tenants_backfill_cannot_delay_another_tenants_bulk_pause_or_the_periodic_checks(
    tmp_path: Path, tenant_a, tenant_b, operator_b
):
    now = datetime.now(UTC)
    top = now.replace(minute=0, second=0, microsecond=0)
    # Tenant A: 48 hours of minute rows, all marked dirty; its oldest hour's rollup row exists.
    busy = AgentFactory.create(tenant=tenant_a, external_id="busy")
    MetricMinute.objects.bulk_create(
        MetricMinute(agent=busy, tenant=tenant_a, minute=top - timedelta(hours=h), samples=1, tokens=h)
        for h in range(1, 49)
    )
    rollups.rollup_mark_dirty(tenant_id=tenant_a.pk, times=[top - timedelta(hours=h) for h in range(1, 49)], now=now)
    oldest = MetricHour.objects.create(agent=busy, tenant=tenant_a, hour=top - timedelta(hours=48))
    # Tenant B: agents to pause, one silent, one whose timed pause is over.
    for n in range(6):
        AgentFactory.create(tenant=tenant_b, external_id=f"b-{n}", labels={"team": "b"})
    silent = AgentFactory.create(
        tenant=tenant_b,
        external_id="silent",
        observed_state=ObservedState.RUNNING,
        last_heartbeat_at=now - timedelta(hours=1),
    )
    timed = AgentFactory.create(
        tenant=tenant_b, external_id="timed", desired_state=DesiredState.PAUSED, pause_until=now - timedelta(minutes=1)
    )

    with (
        celery_worker(tmp_path, queues="background", beat=False, name="background"),
        celery_worker(tmp_path, queues="control", beat=True, name="control", L10_AGENT_HEARTBEAT_INTERVAL="1"),
    ):
        with row_locked(oldest):
            # 1. A's backfill starts on the background worker and is held on the locked row.
            runner.enqueue("fleet.tasks.rollup_backlog")
            wait_for(waiting_on_a_lock, timeout=30, what="A's backfill to block on the row lock")

            # 2. B's bulk pause runs to its end meanwhile, on the control worker.
            picked = bulk_select(tenant_b, selector="team=b")
            batch = bulk_start(tenant=tenant_b, actor=Actor(user=operator_b), action=Action.PAUSE, agents=picked)
            wait_for(lambda: Batch.objects.get(pk=batch.pk).finished_at, timeout=30, what="B's bulk pause to finish")
            assert set(batch.items.values_list("outcome", flat=True)) == {ItemOutcome.SUCCESS}

            # 3. So do the periodic checks: the silent agent is flagged, the timed pause ends.
            wait_for(
                lambda: Agent.objects.get(pk=silent.pk).observed_state == ObservedState.UNRESPONSIVE,
                timeout=30,
                what="the unresponsive sweep",
            )
            wait_for(
                lambda: Agent.objects.get(pk=timed.pk).desired_state == DesiredState.RUNNING,
                timeout=40,
                what="the timed-pause expiry",
            )

            # 4. A's backfill is still held up: none of its hours is done yet.
            assert waiting_on_a_lock() >= 1
            assert RollupDirtyHour.objects.filter(tenant=tenant_a).count() == 48

        # 5. Released, A's backfill goes on, a bounded step at a time, oldest first.
        wait_for(
            lambda: RollupDirtyHour.objects.filter(tenant=tenant_a).count() <= 48 - 24,
            timeout=30,
            what="A's first bounded step to finish",
        )
        assert MetricHour.objects.filter(tenant=tenant_a, hour=oldest.hour).get().tokens == 48
