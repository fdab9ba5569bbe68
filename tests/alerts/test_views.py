"""The on-call pages: the alerts list with its filters, one alert's timeline, the header
badge, and acknowledge and snooze from the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import services
from alerts.models import Alert, AlertState, AlertTransition
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerts(tenant_a):
    rules = {r.name: r for r in services.default_rules(tenant_a)}
    now = timezone.now()
    made = {}
    for name, rule_name, severity, state in (
        ("crawler-1", "Agent unresponsive", "critical", AlertState.FIRING),
        ("crawler-2", "Error rate above 5 %", "warning", AlertState.PENDING),
        ("crawler-3", "Error rate above 5 %", "warning", AlertState.RESOLVED),
    ):
        agent = AgentFactory.create(tenant=tenant_a, external_id=name, name=name.title().replace("-", " "))
        made[name] = Alert.objects.create(
            tenant=tenant_a, rule=rules[rule_name], agent=agent, fingerprint=f"agent:{agent.pk}", state=state,
            severity=severity, message=f"{rule_name} on {name}", started_at=now, evaluated_at=now,
            fired_at=now if state != AlertState.PENDING else None,
        )  # fmt: skip
        AlertTransition.objects.create(alert=made[name], at=now, from_state="", to_state=state)
    return made


def test_the_page_lists_open_alerts_and_filters_them(viewer_a, alerts):
    client = client_for(viewer_a)
    page = client.get("/t/acme/alerts/").content.decode()
    assert "on crawler-1" in page and "on crawler-2" in page and "on crawler-3" not in page
    # A page without a live socket shows the badge in its HTML: one firing, unhandled.
    assert 'data-testid="alert-badge" title="Firing alerts nobody has acknowledged or snoozed">1</span>' in (
        client.get("/t/acme/alerts/rules/").content.decode()
    )
    assert 'data-testid="acknowledge"' not in page  # a viewer has no actions
    critical = client.get("/t/acme/alerts/?severity=critical").content.decode()
    assert "on crawler-1" in critical and "on crawler-2" not in critical
    resolved = client.get("/t/acme/alerts/?status=resolved").content.decode()
    assert "on crawler-3" in resolved and "on crawler-1" not in resolved
    by_agent = client.get("/t/acme/alerts/?agent=crawler 2&status=all").content.decode()
    assert "on crawler-2" in by_agent and "on crawler-1" not in by_agent
    odd = client.get("/t/acme/alerts/?status=bogus&severity=x&rule=abc")
    assert odd.status_code == 200 and "on crawler-1" in odd.content.decode()  # unknown filters: the default


def test_an_operator_acknowledges_from_the_page_and_the_badge_drops(
    operator_a, alerts, django_capture_on_commit_callbacks
):
    client = client_for(operator_a)
    alert = alerts["crawler-1"]
    page = client.get("/t/acme/alerts/").content.decode()
    assert 'data-testid="acknowledge"' in page
    assert ">1</span>" in client.get("/t/acme/alerts/rules/").content.decode()  # the badge, 1, is cached now
    with django_capture_on_commit_callbacks(execute=True):  # the change drops the cached badge on commit
        done = client.post(f"/t/acme/alerts/{alert.pk}/acknowledge/", {"comment": "looking", "next": "list"})
    assert "Acknowledged:" in client.get(done["Location"]).content.decode()
    text = client.get("/t/acme/alerts/rules/").content.decode()
    assert 'data-testid="alert-badge" title="Firing alerts nobody has acknowledged or snoozed" hidden' in text
    alert.refresh_from_db()
    assert alert.acknowledged_by == operator_a and alert.ack_comment == "looking"
    detail = client.get(f"/t/acme/alerts/{alert.pk}/").content.decode()
    assert "acknowledge by oscar: looking" in detail and 'data-testid="acknowledged"' in detail


def test_snooze_from_the_page_and_refusals_say_why(operator_a, alerts):
    client = client_for(operator_a)
    alert = alerts["crawler-1"]
    client.post(f"/t/acme/alerts/{alert.pk}/snooze/", {"for": "4h"})
    alert.refresh_from_db()
    assert alert.snoozed_until is not None and alert.snoozed_until - timezone.now() > timedelta(hours=3, minutes=59)
    bad = client.post(f"/t/acme/alerts/{alert.pk}/snooze/", {"for": "forever"}, follow=True).content.decode()
    assert "E10710" in bad
    late = client.post(
        f"/t/acme/alerts/{alert.pk}/snooze/", {"for": "until", "until": "2099-01-01 00:00"}, follow=True
    ).content.decode()
    assert "E10710" in late
    gone = alerts["crawler-3"]
    refused = client.post(f"/t/acme/alerts/{gone.pk}/acknowledge/", follow=True).content.decode()
    assert "E10709" in refused


def test_another_tenants_alert_is_not_found(operator_b, alerts):
    client = client_for(operator_b)
    assert client.get(f"/t/acme/alerts/{alerts['crawler-1'].pk}/").status_code == 404
    assert client.get(f"/t/globex/alerts/{alerts['crawler-1'].pk}/").status_code == 404


def test_rules_in_django_admin_are_checked_as_the_console_checks_them_and_audited(staff, tenant_a):
    from alerts.models import AlertRule
    from audit.models import AuditEntry

    client = client_for(staff)
    form = {
        "tenant": tenant_a.pk, "name": "Hot CPU", "metric": "cpu_percent", "aggregation": "avg", "comparator": "gt",
        "threshold": "80", "window_seconds": "300", "for_seconds": "60", "min_samples": "1", "no_data": "ok",
        "severity": "warning", "selector": "team==", "enabled": "on",
    }  # fmt: skip
    refused = client.post("/admin/alerts/alertrule/add/", form)
    assert refused.status_code == 200 and "E10706" in refused.content.decode()
    assert not AlertRule.objects.filter(name="Hot CPU").exists()
    made = client.post("/admin/alerts/alertrule/add/", {**form, "selector": "team=search"})
    assert made.status_code == 302, made.content.decode()[-1500:]
    rule = AlertRule.objects.get(name="Hot CPU")
    assert rule.selector == "team=search" and rule.for_seconds == 60
    assert AuditEntry.objects.filter(action="alert_rule.create", actor=staff).exists()


def test_pause_from_an_alert_pauses_its_agent_through_control_with_the_alert_as_reason(operator_a, viewer_a, alerts):
    from audit.models import AuditEntry
    from fleet.models import Agent

    alert = alerts["crawler-1"]
    assert client_for(viewer_a).post(f"/t/acme/alerts/{alert.pk}/pause-agent/").status_code == 403
    done = client_for(operator_a).post(f"/t/acme/alerts/{alert.pk}/pause-agent/", follow=True).content.decode()
    assert "is pausing" in done
    agent = Agent.objects.get(pk=alert.agent_id)
    assert agent.desired_state == "paused" and agent.pause_reason == f"alert-{alert.pk}: {alert.message}"
    entry = AuditEntry.objects.get(action__contains="pause", resource_id=str(agent.pk))
    assert entry.reason == agent.pause_reason and entry.actor == operator_a


def test_the_alert_page_draws_its_metric_around_it_with_the_threshold(viewer_a, tenant_a):
    import json
    import re

    from fleet.models import MetricMinute

    rule = services.default_rules(tenant_a)[1]  # error rate > 5 %
    agent = AgentFactory.create(tenant=tenant_a)
    began = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    for back, errors in ((2, 0), (1, 3), (0, 8)):
        MetricMinute.objects.create(
            agent=agent, tenant=tenant_a, minute=began - timedelta(minutes=back), samples=6, requests=100, errors=errors
        )
    alert = Alert.objects.create(
        tenant=tenant_a, rule=rule, agent=agent, fingerprint="agent:y", state="firing", severity="warning",
        message="errors", started_at=began, fired_at=began, evaluated_at=began,
    )  # fmt: skip
    page = client_for(viewer_a).get(f"/t/acme/alerts/{alert.pk}/").content.decode()
    found = re.search(r'<script id="chart-alert" type="application/json">(.*?)</script>', page, re.S)
    assert found is not None
    chart = json.loads(found[1])
    values = dict(zip(chart["x"], chart["series"][0]["values"], strict=True))
    assert [values[int((began - timedelta(minutes=b)).timestamp())] for b in (2, 1, 0)] == [0.0, 3.0, 8.0]
    assert set(chart["series"][1]["values"]) == {5.0} and chart["unit"] == "%"


def test_alerts_filter_by_their_agents_labels_and_a_bad_selector_shows_none(viewer_a, alerts):
    from fleet.models import Agent

    Agent.objects.filter(external_id="crawler-2").update(labels={"team": "search"})
    Agent.objects.exclude(external_id="crawler-2").update(labels={"team": "ads"})
    client = client_for(viewer_a)
    page = client.get("/t/acme/alerts/?labels=team%3Dsearch").content.decode()
    assert "on crawler-2" in page and "on crawler-1" not in page
    bad = client.get("/t/acme/alerts/?labels=team%3D%3D")
    text = bad.content.decode()
    assert bad.status_code == 400 and "E10706" in text and "on crawler-1" not in text


def test_the_alert_page_acknowledges_until_a_time_and_snoozes_until_a_time(operator_a, alerts):
    alert = alerts["crawler-1"]
    client = client_for(operator_a)
    page = client.get(f"/t/acme/alerts/{alert.pk}/").content.decode()
    assert 'data-testid="ack-until"' in page and 'data-testid="snooze-until"' in page
    later = (timezone.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
    client.post(
        f"/t/acme/alerts/{alert.pk}/acknowledge/", {"until": later.strftime("%Y-%m-%d %H:%M"), "next": "detail"}
    )
    client.post(
        f"/t/acme/alerts/{alert.pk}/snooze/",
        {"for": "until", "until": later.strftime("%Y-%m-%d %H:%M"), "next": "detail"},
    )
    alert.refresh_from_db()
    assert alert.acknowledged_until == later and alert.snoozed_until == later
