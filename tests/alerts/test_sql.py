"""The alert evaluation's plain statement beside its portable twin (core/sql.py)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from alerts import sql
from alerts.models import Metric
from fleet.models import Agent, DesiredState, MetricMinute
from tests.alerts.conftest import NOW
from tests.factories import AgentFactory
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def alone(metric: str, tenant_id: int, window: int) -> dict:
    """One (metric, window) read by itself, on the plain path, by agent."""
    return sql.windows.plain(tenant_id, {metric: (window,)}, NOW).aggregates(metric, window)


@parity(sql.windows)
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
    window = minutes * 60
    plain = sql.windows.plain(tenant_a.pk, {metric: (window,)}, NOW)
    portable = sql.windows.portable(tenant_a.pk, {metric: (window,)}, NOW)
    assert set(plain.agents) == set(portable.agents) == {a.pk for a in fleet}
    plain_figures, portable_figures = plain.aggregates(metric, window), portable.aggregates(metric, window)
    assert plain_figures.keys() == portable_figures.keys() and len(plain_figures) == 3
    for agent_id, figures in plain_figures.items():
        assert figures._asdict() == pytest.approx(portable_figures[agent_id]._asdict()), agent_id


def test_the_figures_of_an_agent_are_those_of_its_own_minutes(tenant_a, fleet):
    hot = fleet[0]
    cpu = alone(Metric.CPU, tenant_a.pk, 300)[hot.pk]
    assert (cpu.samples, cpu.avg, cpu.max, cpu.p95, cpu.sum) == (30, 92.0, 97.0, 92.0, 460.0)
    assert alone(Metric.ERROR_RATE, tenant_a.pk, 300)[hot.pk].avg == pytest.approx(30.0)  # 15 failed of 50 requests
    assert alone(Metric.LATENCY, tenant_a.pk, 300)[hot.pk].max == 204.0


def test_an_agent_without_a_minute_in_a_shorter_window_has_no_figures_there(tenant_a, fleet):
    hot, cool, other = fleet
    MetricMinute.objects.filter(agent=cool, minute__gt=NOW - timedelta(minutes=3)).delete()
    read = sql.windows.plain(tenant_a.pk, {Metric.CPU: (120, 300)}, NOW)
    assert set(read.agents) == {hot.pk, cool.pk, other.pk}  # the longest window holds all three
    assert set(read.aggregates(Metric.CPU, 120)) == {hot.pk, other.pk}
    at = list(read.agents).index(cool.pk)
    short = read.figures[(Metric.CPU, 120)]
    assert short.samples[at] == 0 and math.isnan(short.avg[at]) and math.isnan(short.column("p95")[at])
    assert read.figures[(Metric.CPU, 300)].samples[at] == 12


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


@parity(sql.windows)
def test_every_metric_and_window_read_at_once_is_each_read_alone(tenant_a, fleet):
    for back in range(5, 25):
        MetricMinute.objects.create(
            agent=fleet[0], tenant=tenant_a, minute=NOW.replace(second=0) - timedelta(minutes=back), samples=6,
            cpu_sum=6.0 * back, cpu_max=back + 1.0, memory_sum=60.0 * back, memory_max=10.0 * back, tokens=back,
            requests=10 + back, errors=back % 7, latency_p95_ms=float(back * 3),
        )  # fmt: skip
    # Each metric its own windows: the p95 as a maximum, and sorted; a window only one metric has.
    wanted: dict[str, tuple[int, ...]] = {
        metric: (300, 1140, 1500) if n % 2 else (600, 1500) for n, metric in enumerate(sql.WINDOWED)
    }
    plain = sql.windows.plain(tenant_a.pk, wanted, NOW)
    portable = sql.windows.portable(tenant_a.pk, wanted, NOW)
    assert set(plain.figures) == set(portable.figures) == {(m, w) for m, ws in wanted.items() for w in ws}
    for metric, windows in wanted.items():
        for window in windows:
            together, apart = plain.aggregates(metric, window), alone(metric, tenant_a.pk, window)
            twin = portable.aggregates(metric, window)
            assert together.keys() == apart.keys() == twin.keys()
            for agent_id, figures in together.items():
                assert figures._asdict() == pytest.approx(apart[agent_id]._asdict())
                assert figures._asdict() == pytest.approx(twin[agent_id]._asdict())


def test_no_minutes_read_no_agents(tenant_a, fleet):
    read = sql.windows.plain(tenant_a.pk, {Metric.CPU: (300,)}, NOW - timedelta(days=1))
    assert list(read.agents) == [] and read.aggregates(Metric.CPU, 300) == {}


@parity(sql.scopes)
def test_both_scope_paths_hold_the_same_agents(tenant_a, tenant_b, fleet):
    hot, cool, other = fleet
    Agent.objects.filter(pk=cool.pk).update(desired_state=DesiredState.PAUSED)
    stopped = AgentFactory.create(
        tenant=tenant_a, external_id="gone", labels={"team": "ads", "env": "dev"}, desired_state=DesiredState.STOPPED
    )
    bare = AgentFactory.create(tenant=tenant_a, external_id="bare", labels={})
    AgentFactory.create(tenant=tenant_b, external_id="theirs", labels={"team": "search"})
    selectors = ["team=search", "team!=search", "team in (ads,search)", "env notin (dev)", "team=ads,env=dev", "x=y"]
    plain = sql.scopes.plain(tenant_a.pk, selectors)
    assert plain == sql.scopes.portable(tenant_a.pk, selectors)
    assert plain.running == {
        "": {hot.pk, other.pk, bare.pk},
        "team=search": {hot.pk},
        "team!=search": {other.pk, bare.pk},  # an agent without the key matches != and notin
        "team in (ads,search)": {hot.pk, other.pk},
        "env notin (dev)": {hot.pk, other.pk, bare.pk},
        "team=ads,env=dev": set(),
        "x=y": set(),
    }
    assert plain.stopped[""] == {stopped.pk} == plain.stopped["team=ads,env=dev"]
    assert plain.stopped["env notin (dev)"] == set()
    assert sql.scopes.plain(tenant_a.pk + 1000, ["team=search"]) == ({"": set(), "team=search": set()},) * 2


@parity(sql.heartbeat_ages)
def test_both_heartbeat_age_paths_agree(tenant_a, fleet):
    hot, cool, _ = fleet
    Agent.objects.filter(pk=hot.pk).update(last_heartbeat_at=NOW - timedelta(minutes=5, milliseconds=250))
    Agent.objects.filter(pk=cool.pk).update(last_heartbeat_at=None)
    plain = sql.heartbeat_ages.plain(tenant_a.pk, NOW)
    assert plain.keys() == sql.heartbeat_ages.portable(tenant_a.pk, NOW).keys()
    assert plain == pytest.approx(sql.heartbeat_ages.portable(tenant_a.pk, NOW))
    assert plain[hot.pk] == pytest.approx(300.25) and cool.pk not in plain
