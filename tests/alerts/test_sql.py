"""The alert evaluation's plain statement beside its portable twin (core/sql.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts import sql
from fleet.models import MetricMinute
from tests.alerts.conftest import NOW
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@parity(sql.window_aggregates)
@pytest.mark.parametrize("minutes", [10, 19, 20, 25])  # the p95 as a maximum up to 19 minutes, sorted beyond
@pytest.mark.parametrize("metric", sql.WINDOWED)
def test_both_window_aggregate_paths_agree(tenant_a, fleet, metric, minutes):
    # Odd rows too: more errors than requests, a minute with no samples or requests.
    MetricMinute.objects.create(
        agent=fleet[1], tenant=tenant_a, minute=NOW.replace(second=0) - timedelta(minutes=7), samples=0, cpu_sum=0,
        cpu_max=0, requests=0, errors=4,
    )  # fmt: skip
    MetricMinute.objects.filter(agent=fleet[2]).update(errors=50)
    for back in range(5, 25):  # older minutes, each with its own figures, so the ranks differ
        MetricMinute.objects.create(
            agent=fleet[0], tenant=tenant_a, minute=NOW.replace(second=0) - timedelta(minutes=back), samples=6,
            cpu_sum=6.0 * back, cpu_max=back + 1.0, memory_sum=60.0 * back, memory_max=10.0 * back, tokens=back,
            requests=10 + back, errors=back % 7, latency_p95_ms=float(back * 3),
        )  # fmt: skip
    start = NOW - timedelta(minutes=minutes)
    plain = sql.window_aggregates.plain(metric, tenant_a.pk, start, NOW)
    portable = sql.window_aggregates.portable(metric, tenant_a.pk, start, NOW)
    assert plain.keys() == portable.keys() and len(plain) == 3
    for agent_id, figures in plain.items():
        assert figures._asdict() == pytest.approx(portable[agent_id]._asdict()), agent_id


@parity(sql.update_values)
def test_both_value_writes_set_each_alert_its_value_and_the_time(tenant_a, fleet):
    from alerts.evaluation import evaluate_tenant
    from alerts.models import Alert, AlertRule

    AlertRule.objects.create(
        tenant=tenant_a, name="CPU hot", metric="cpu_percent", threshold=80, created_at=NOW, updated_at=NOW
    )
    evaluate_tenant(tenant_a.pk, now=NOW)
    hot, other = Alert.objects.order_by("pk")
    later = NOW + timedelta(seconds=15)
    assert sql.update_values.plain({hot.pk: 91.5, other.pk: None}, later) == 2
    assert sql.update_values.plain({}, later) == 0
    assert sql.update_values.portable({other.pk: 97.25}, later + timedelta(seconds=15)) == 1
    rows = dict(Alert.objects.values_list("pk", "value"))
    assert rows == {hot.pk: 91.5, other.pk: 97.25}
    assert Alert.objects.get(pk=hot.pk).evaluated_at == later


@parity(sql.windows_aggregates)
@pytest.mark.parametrize("metric", sql.WINDOWED)
def test_several_windows_read_at_once_are_each_window_read_alone(tenant_a, fleet, metric):
    for back in range(5, 25):
        MetricMinute.objects.create(
            agent=fleet[0], tenant=tenant_a, minute=NOW.replace(second=0) - timedelta(minutes=back), samples=6,
            cpu_sum=6.0 * back, cpu_max=back + 1.0, memory_sum=60.0 * back, memory_max=10.0 * back, tokens=back,
            requests=10 + back, errors=back % 7, latency_p95_ms=float(back * 3),
        )  # fmt: skip
    windows = (300, 1140, 1500)  # the p95 as a maximum, and sorted
    plain = sql.windows_aggregates.plain(metric, tenant_a.pk, windows, NOW)
    portable = sql.windows_aggregates.portable(metric, tenant_a.pk, windows, NOW)
    assert set(plain) == set(portable) == set(windows)
    for window in windows:
        alone = sql.window_aggregates.plain(metric, tenant_a.pk, NOW - timedelta(seconds=window), NOW)
        assert plain[window].keys() == portable[window].keys() == alone.keys()
        for agent_id, figures in plain[window].items():
            assert figures._asdict() == pytest.approx(portable[window][agent_id]._asdict())
            assert figures._asdict() == pytest.approx(alone[agent_id]._asdict())
