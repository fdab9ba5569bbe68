"""Evaluation against the metric store: set-based reads, the lifecycle written once per
transition, scopes, and two evaluators at once (alerts/evaluation.py)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from alerts import sql
from alerts.evaluation import evaluate, evaluate_tenant
from alerts.models import Alert, AlertRule, AlertState, AlertTransition, Metric, NoData
from fleet.models import Agent, DesiredState, MetricMinute
from tests.alerts.conftest import NOW
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def make_rule(tenant, **fields) -> AlertRule:
    base = {
        "name": "CPU hot", "metric": Metric.CPU, "aggregation": "avg", "comparator": "gt", "threshold": 80.0,
        "window_seconds": 300, "for_seconds": 0, "min_samples": 1, "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    return AlertRule.objects.create(tenant=tenant, **{**base, **fields})


def open_alerts(rule: AlertRule) -> dict[str, str]:
    found = Alert.objects.filter(rule=rule, state__in=["pending", "firing"]).select_related("agent")
    return {a.agent.external_id if a.agent else "": a.state for a in found}


def test_a_rule_fires_for_the_agents_past_its_threshold_and_no_other(tenant_a, fleet):
    rule = make_rule(tenant_a)
    done = evaluate_tenant(tenant_a.pk, now=NOW)
    assert open_alerts(rule) == {"hot": "firing", "other": "firing"}
    assert sorted((b, a) for _, b, a in done.transitions) == [("", "pending")] * 2 + [("pending", "firing")] * 2
    alert = Alert.objects.get(rule=rule, agent=fleet[0])
    assert alert.value == 92.0 and alert.fired_at == NOW and "CPU % 92" in alert.message


def test_evaluating_again_changes_nothing_and_never_duplicates_an_alert(tenant_a, fleet):
    rule = make_rule(tenant_a)
    evaluate_tenant(tenant_a.pk, now=NOW)
    again = evaluate_tenant(tenant_a.pk, now=NOW + timedelta(seconds=15))
    assert again.transitions == []
    assert Alert.objects.filter(rule=rule).count() == 2
    assert AlertTransition.objects.count() == 4


def test_the_metrics_are_read_once_per_metric_whatever_the_rules_and_windows(tenant_a, fleet):
    make_rule(tenant_a, name="a")
    make_rule(tenant_a, name="b", aggregation="max", threshold=90)
    make_rule(tenant_a, name="c", aggregation="p95", threshold=50, selector="team=search")
    make_rule(tenant_a, name="d", metric=Metric.MEMORY, threshold=100)
    make_rule(tenant_a, name="e", metric=Metric.CPU, window_seconds=600)
    with CaptureQueriesContext(connection) as queries:
        evaluate_tenant(tenant_a.pk, now=NOW)
    reads = [q["sql"] for q in queries.captured_queries if "fleet_metricminute" in q["sql"]]
    assert len(reads) == 1  # cpu (its 300 and 600 s windows) and memory in one statement


@pytest.mark.postgres
def test_the_scopes_are_read_in_one_statement_whatever_the_selectors(tenant_a, fleet):
    make_rule(tenant_a, name="a")
    make_rule(tenant_a, name="b", selector="team=search")
    make_rule(tenant_a, name="c", selector="team=ads", metric=Metric.HEARTBEAT_AGE, threshold=60)
    make_rule(tenant_a, name="d", agent=fleet[1])
    with CaptureQueriesContext(connection) as queries:
        evaluate_tenant(tenant_a.pk, now=NOW)
    agents = [q["sql"] for q in queries.captured_queries if re.search(r'FROM "?fleet_agent"? ', q["sql"])]
    assert len(agents) == 2  # the scopes, with a column per selector; the heartbeat ages


def test_a_selector_scopes_a_rule_and_an_agent_leaving_it_ends_its_alert(tenant_a, fleet):
    hot = fleet[0]
    rule = make_rule(tenant_a, selector="team=search")
    evaluate_tenant(tenant_a.pk, now=NOW)
    assert open_alerts(rule) == {"hot": "firing"}
    Agent.objects.filter(pk=hot.pk).update(desired_state=DesiredState.PAUSED)  # paused on purpose
    evaluate_tenant(tenant_a.pk, now=NOW + timedelta(seconds=15))
    assert open_alerts(rule) == {}
    assert Alert.objects.get(rule=rule, agent=hot).state == AlertState.RESOLVED


def test_heartbeat_age_and_quota_use_rules(tenant_a, fleet):
    hot, cool, _ = fleet
    Agent.objects.filter(pk=hot.pk).update(last_heartbeat_at=NOW - timedelta(minutes=5))
    Agent.objects.filter(pk=cool.pk).update(last_heartbeat_at=NOW - timedelta(seconds=5))
    silent = make_rule(tenant_a, name="silent", metric=Metric.HEARTBEAT_AGE, aggregation="max", threshold=90)
    Agent.objects.filter(pk=cool.pk).update(quotas={"tokens": {"day": 0}})  # a zero limit is full
    quota = make_rule(tenant_a, name="quota", metric=Metric.QUOTA_USE, aggregation="max", threshold=80)
    evaluate_tenant(tenant_a.pk, now=NOW)
    assert "hot" in open_alerts(silent) and "cool" not in open_alerts(silent)
    assert open_alerts(quota) == {"cool": "firing"}


def test_a_no_data_rule_raises_an_alert_for_an_agent_that_reports_nothing(tenant_a, fleet):
    quiet = AgentFactory.create(tenant=tenant_a, external_id="quiet")
    rule = make_rule(tenant_a, no_data=NoData.ALERT, threshold=99)
    evaluate_tenant(tenant_a.pk, now=NOW)
    alert = Alert.objects.get(rule=rule, agent=quiet)
    assert alert.no_data and alert.state == AlertState.FIRING and "no data" in alert.message


def test_every_tenant_is_evaluated_and_one_failing_tenant_does_not_stop_the_others(tenant_a, tenant_b, fleet):
    rule = make_rule(tenant_a)
    make_rule(tenant_b, name="broken", selector="team=(", threshold=1)  # stored bypassing validation
    done = evaluate(now=NOW)
    assert done.rules == 1 and open_alerts(rule) == {"hot": "firing", "other": "firing"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_evaluators_at_once_make_each_transition_once(tenant_a, fleet):
    rules = [make_rule(tenant_a, name=f"r{n}", threshold=10 + n) for n in range(20)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            evaluate(now=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    # 20 rules × 3 agents over the threshold (cool's 20 % passes r0–r9 only): once each.
    expected = sum(len([c for c in (92.0, 20.0, 95.0) if c > r.threshold]) for r in rules)
    assert Alert.objects.count() == expected
    assert AlertTransition.objects.filter(from_state="", to_state="pending").count() == expected
    assert AlertTransition.objects.filter(from_state="pending", to_state="firing").count() == expected


def test_an_emergency_stop_the_agent_does_not_confirm_is_a_critical_alert_until_it_stops(tenant_a, fleet):
    from alerts.services import default_rules
    from fleet.liveness import agents_flag_unconfirmed_stops

    rule = next(r for r in default_rules(tenant_a) if r.name == "Emergency stop not confirmed")
    hot = fleet[0]
    Agent.objects.filter(pk=hot.pk).update(
        desired_state=DesiredState.STOPPED, desired_changed_at=NOW - timedelta(minutes=5), observed_state="running"
    )
    assert agents_flag_unconfirmed_stops(now=NOW) == [hot.pk]
    evaluate_tenant(tenant_a.pk, now=NOW)
    alert = Alert.objects.get(rule=rule)
    assert (alert.agent_id, alert.state, alert.severity) == (hot.pk, AlertState.FIRING, "critical")
    Agent.objects.filter(pk=hot.pk).update(observed_state="stopped")  # the agent confirms at last
    evaluate_tenant(tenant_a.pk, now=NOW + timedelta(seconds=15))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


@pytest.mark.django_db(transaction=True)
def test_the_alert_service_evaluates_through_the_dashboards_metrics_engine(tenant_a, fleet):
    import asyncio
    from typing import Any

    from asgiref.sync import sync_to_async

    from alerts.facade import AlertService
    from dashboard.facade import ConsoleMetricsEngine, MetricsEngine

    engine = ConsoleMetricsEngine()
    assert isinstance(engine, MetricsEngine)  # the pages' engine carries the evaluation's reads
    rule = make_rule(tenant_a)

    async def evaluate() -> Any:
        try:
            return await AlertService(metrics_engine=engine).evaluate(now=NOW)
        finally:  # the work ran on sync_to_async's thread: close its connection there
            await sync_to_async(connections.close_all)()

    done = asyncio.run(evaluate())
    assert done.rules >= 1 and open_alerts(rule) == {"hot": "firing", "other": "firing"}


class OutsideStore:
    """A metric store outside the console (the port's other side): figures it holds, in the
    port's column shape, and no minute row in the console's tables."""

    def __init__(self, cpu: dict) -> None:
        self.cpu = cpu
        self.asked: list[tuple] = []

    def windows(self, tenant_id, wanted, end):
        self.asked.append((tenant_id, dict(wanted), end))
        agents = list(self.cpu)
        values = [float(v) for v in self.cpu.values()]
        window = sql.Window([6] * len(agents), values, values, values, values)
        return sql.Windows(agents, {(m, w): window for m, ws in wanted.items() for w in ws})

    def point_values(self, metric, tenant_id, now):
        return {}


def test_another_metric_store_plugs_in_without_touching_the_evaluator(tenant_a, fleet):
    hot, cool, _ = fleet
    MetricMinute.objects.all().delete()  # the console's store is empty: what fires comes from the other
    rule = make_rule(tenant_a, window_seconds=600)
    store = OutsideStore({cool.pk: 99.0, hot.pk: 10.0})
    evaluate_tenant(tenant_a.pk, now=NOW, source=store)
    assert open_alerts(rule) == {"cool": "firing"}
    assert store.asked == [(tenant_a.pk, {Metric.CPU: (600,)}, NOW)]
    assert Alert.objects.get(rule=rule).value == 99.0
