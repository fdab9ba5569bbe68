"""The charts' JSON: each chart says its step and span, and the live overview's tail puts
the step in progress beside the last whole one as a rate so far."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboard import charts
from fleet.models import MetricMinute
from fleet.series import RANGES
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 25, 12, 7, 45, tzinfo=UTC)


@pytest.fixture
def reported(tenant_a):
    agent = AgentFactory.create(tenant=tenant_a)
    for minute, tokens, requests, errors in ((5, 900, 100, 0), (6, 900, 100, 5), (7, 675, 75, 3)):
        MetricMinute.objects.create(
            agent=agent, tenant=tenant_a, minute=datetime(2026, 11, 25, 12, minute, tzinfo=UTC), samples=6,
            cpu_sum=6 * 40.0, cpu_max=40.0, tokens=tokens, requests=requests, errors=errors,
        )  # fmt: skip
    return agent


def test_each_chart_names_itself_with_its_step_and_span(tenant_a, reported):
    drawn = charts.fleet_charts(tenant_a.pk, RANGES["1h"], NOW)
    assert {name: (c["name"], c["step"], c["span"]) for name, c in drawn.items()} == {
        name: (name, 60, 3600) for name in ("cpu", "memory", "tokens", "requests", "latency")
    }
    end = charts.drawn_to(drawn)
    assert end is not None and end.at == datetime(2026, 11, 25, 12, 6, tzinfo=UTC) and end.step == "minute"
    assert charts.drawn_to(charts.fleet_charts(tenant_a.pk, RANGES["24h"], NOW)).step == "5 minutes"  # type: ignore[union-attr]


def test_the_tail_gives_the_minute_in_progress_as_a_rate_per_minute_so_far(tenant_a, reported):
    tail = charts.fleet_tail(tenant_a.pk, NOW)["60"]
    assert tail["x"] == [int(datetime(2026, 11, 25, 12, m, tzinfo=UTC).timestamp()) for m in (6, 7)]
    assert tail["partial"] is True and tail["elapsed"] == 0.75
    # 675 tokens in three quarters of a minute: 900 a minute, like the whole minute before.
    assert tail["charts"]["tokens"] == [[900.0, 900.0]]
    assert tail["charts"]["requests"] == [[100.0, 100.0], [5.0, 4.0]]
    assert tail["charts"]["cpu"][0] == [40.0, 40.0]


def test_a_step_with_nothing_reported_yet_is_a_gap_not_a_zero(tenant_a, reported):
    tail = charts.fleet_tail(tenant_a.pk, datetime(2026, 11, 25, 12, 9, 30, tzinfo=UTC))["60"]
    assert tail["partial"] is False  # 12:09 has no reports
    assert tail["charts"]["tokens"] == [[None, None]]  # nor had 12:08
