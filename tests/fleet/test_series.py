"""The metric store's series: windows aligned to the step of the points they hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.models import MetricHour, MetricMinute
from fleet.series import PARTIAL_FROM, RANGES, agent_series, fleet_tail, window
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


def _minute(agent, at: datetime, *, tokens: int, cpu: float, samples: int = 6, requests: int = 0) -> None:
    MetricMinute.objects.create(
        agent=agent, tenant=agent.tenant, minute=at, samples=samples, cpu_sum=cpu * samples, cpu_max=cpu,
        tokens=tokens, requests=requests,
    )  # fmt: skip


def test_the_live_tail_holds_the_last_whole_step_and_the_step_in_progress_as_a_rate_so_far(tenant_a):
    agents = [AgentFactory.create(tenant=tenant_a) for _ in range(2)]
    now = datetime(2026, 11, 25, 12, 7, 30, tzinfo=UTC)  # half of 12:07, 2.5 min into 12:05–12:10
    for agent, cpu in zip(agents, (10.0, 30.0), strict=True):
        for at in range(0, 8):
            # A whole minute carries 600 tokens per agent; the minute in progress half of that.
            _minute(agent, datetime(2026, 11, 25, 12, at, tzinfo=UTC), tokens=300 if at == 7 else 600, cpu=cpu)
    tails = fleet_tail(tenant_a.pk, now)
    assert sorted(tails) == [60, 300, 1800]

    minute = tails[60]
    assert minute.whole_at == datetime(2026, 11, 25, 12, 6, tzinfo=UTC)
    assert minute.whole is not None and minute.whole.tokens == 1200 and minute.whole.minutes == 1
    assert minute.partial is not None and minute.partial.at == datetime(2026, 11, 25, 12, 7, tzinfo=UTC)
    assert minute.elapsed == 0.5
    # 600 tokens in half a minute: 1,200 a minute, as the whole minute before it, not a drop to 600.
    assert minute.partial.tokens / minute.partial.minutes == 1200
    assert minute.partial.cpu_sum / minute.partial.samples == 20.0

    five = tails[300]
    assert five.whole_at == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert five.whole is not None and five.whole.tokens == 5 * 1200 and five.whole.minutes == 5
    assert five.partial is not None and five.partial.tokens == 1200 + 1200 + 600
    assert five.partial.tokens / five.partial.minutes == 1200  # 3,000 tokens over 2.5 minutes
    assert five.whole.cpu_p95 == minute.whole.cpu_p95 > 20.0  # the worst minute's p95 across the agents

    half_hour = tails[1800]
    assert half_hour.whole_at == datetime(2026, 11, 25, 11, 30, tzinfo=UTC)
    assert half_hour.whole is None  # nothing was reported from 11:30 to 12:00
    assert half_hour.partial is not None and half_hour.elapsed == 0.25
    assert half_hour.partial.tokens / half_hour.partial.minutes == 1200  # 9,000 tokens over 7.5 minutes


def test_the_step_in_progress_is_held_back_until_enough_of_it_has_passed(tenant_a):
    agent = AgentFactory.create(tenant=tenant_a)
    _minute(agent, datetime(2026, 11, 25, 12, 6, tzinfo=UTC), tokens=600, cpu=10.0)
    _minute(agent, datetime(2026, 11, 25, 12, 7, tzinfo=UTC), tokens=20, cpu=10.0)
    early = fleet_tail(tenant_a.pk, datetime(2026, 11, 25, 12, 7, 5, tzinfo=UTC))[60]
    assert early.partial is None and early.whole is not None  # five seconds of a minute stand for too little
    later = fleet_tail(tenant_a.pk, datetime(2026, 11, 25, 12, 7, 10, tzinfo=UTC))[60]
    assert later.partial is not None and later.elapsed == pytest.approx(PARTIAL_FROM)
