"""The metric store's series: windows aligned to the step of the points they hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.models import MetricHour, MetricMinute
from fleet.series import RANGES, agent_series, window
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_a_week_of_one_agent_shows_its_hours_whatever_the_minute_now(tenant_a):
    agent = AgentFactory.create(tenant=tenant_a)
    for hours_ago in (1, 2):
        MetricHour.objects.create(
            agent=agent, tenant=tenant_a, hour=datetime(2026, 11, 25, 12, tzinfo=UTC) - timedelta(hours=hours_ago),
            samples=60, cpu_sum=600.0, cpu_max=20.0,
        )  # fmt: skip
    # At 12:10 a half-hour grid would start the week at :30, between the hourly points.
    series = agent_series(agent.pk, RANGES["7d"], now=datetime(2026, 11, 25, 12, 10, tzinfo=UTC))
    assert series.step == timedelta(hours=1) and series.start.minute == 0
    shown = {p.at: p.cpu_sum / p.samples for p in series.slots if p is not None}
    assert shown == {datetime(2026, 11, 25, 10, tzinfo=UTC): 10.0, datetime(2026, 11, 25, 11, tzinfo=UTC): 10.0}


def test_the_step_in_progress_is_left_out_so_a_rate_never_reads_as_a_drop(tenant_a):
    agent = AgentFactory.create(tenant=tenant_a)
    now = datetime(2026, 11, 25, 12, 10, 20, tzinfo=UTC)
    for minute, tokens in ((9, 100), (10, 33)):  # 12:10 has had a third of its minute
        MetricMinute.objects.create(
            agent=agent, tenant=tenant_a, minute=datetime(2026, 11, 25, 12, minute, tzinfo=UTC), samples=6,
            cpu_sum=300.0, cpu_max=50.0, tokens=tokens,
        )  # fmt: skip
    series = agent_series(agent.pk, RANGES["15m"], now=now)
    assert len(series.slots) == 15
    # The last slot is 12:09, the last whole minute; 12:10 is twenty seconds old and not shown.
    assert series.start + 14 * series.step == datetime(2026, 11, 25, 12, 9, tzinfo=UTC)
    assert series.slots[-1] is not None and series.slots[-1].tokens == 100
    assert window(timedelta(minutes=1), timedelta(minutes=15), now)[1] == datetime(2026, 11, 25, 12, 10, tzinfo=UTC)
    # On the boundary itself the minute that just ended is whole, and shown.
    assert window(timedelta(minutes=1), timedelta(minutes=15), datetime(2026, 11, 25, 12, 10, tzinfo=UTC))[1] == (
        datetime(2026, 11, 25, 12, 10, tzinfo=UTC)
    )
