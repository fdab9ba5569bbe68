"""The rules page: everyone reads the rules, admins add and change them; a refused rule
keeps what was typed and names the field; the preview says what the rule would do now."""

from __future__ import annotations

import pytest
from django.db.models import F
from django.utils import timezone

from alerts.models import AlertRule
from audit.models import AuditEntry
from fleet.models import MetricMinute
from tests.alerts.conftest import NOW
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

FORM = {
    "name": "CPU hot", "metric": "cpu_percent", "aggregation": "avg", "window_seconds": "300", "comparator": "gt",
    "threshold": "80", "for_seconds": "0", "resolve_threshold": "", "min_samples": "1", "no_data": "ok",
    "severity": "warning", "scope": "all", "selector": "", "agent": "", "enabled": "on",
}  # fmt: skip


def test_admins_add_a_rule_and_see_it_listed(admin_a, tenant_a):
    client = client_for(admin_a)
    assert 'data-testid="new-rule"' in client.get("/t/acme/alerts/rules/").content.decode()
    done = client.post("/t/acme/alerts/rules/new/", FORM)
    assert done.status_code == 302
    rule = AlertRule.objects.get(tenant=tenant_a, name="CPU hot")
    assert (rule.metric, rule.threshold, rule.enabled) == ("cpu_percent", 80.0, True)
    assert AuditEntry.objects.filter(action="alert_rule.create", resource_id=str(rule.pk)).exists()
    listed = client.get("/t/acme/alerts/rules/").content.decode()
    assert "CPU hot" in listed and "all agents" in listed
    client.post(f"/t/acme/alerts/rules/{rule.pk}/toggle/")
    rule.refresh_from_db()
    assert not rule.enabled


def test_a_refused_rule_keeps_the_input_and_names_the_field(admin_a, tenant_a):
    page = client_for(admin_a).post("/t/acme/alerts/rules/new/", {**FORM, "threshold": "lots", "name": "Kept name"})
    text = page.content.decode()
    assert page.status_code == 422 and "threshold: &#x27;lots&#x27; is not a number. (E10705)" in text
    assert (
        'value="Kept name"' in text
        and 'id="rule-threshold" name="threshold" inputmode="decimal" required value="lots" aria-invalid="true"' in text
    )
    assert not AlertRule.objects.filter(name="Kept name").exists()


def test_the_preview_names_the_agents_the_rule_would_fire_for(admin_a, tenant_a, fleet):
    # The fleet's minutes, moved to end now: the preview reads the fleet as it is.
    MetricMinute.objects.update(minute=F("minute") - (NOW - timezone.now().replace(second=0, microsecond=0)))
    page = client_for(admin_a).post("/t/acme/alerts/rules/new/", {**FORM, "preview": "1"})
    text = page.content.decode()
    assert page.status_code == 200 and 'data-testid="rule-preview"' in text
    assert "would fire now for <strong>2</strong> of the 3 agents it watches: Other (95.0), Hot (92.0)" in text
    assert not AlertRule.objects.filter(name="CPU hot").exists()  # a preview saves nothing


def test_viewers_read_rules_but_cannot_change_them(viewer_a, tenant_a):
    client = client_for(viewer_a)
    assert client.get("/t/acme/alerts/rules/").status_code == 200
    assert client.get("/t/acme/alerts/rules/new/").status_code == 403
    assert client.post("/t/acme/alerts/rules/new/", FORM).status_code == 403


def test_admins_add_notification_targets_and_choose_them_on_a_rule(admin_a, tenant_a, tenant_b):
    from alerts.models import NotificationTarget

    client = client_for(admin_a)
    bad = client.post("/t/acme/alerts/targets/add/", {"name": "pager", "kind": "webhook", "url": "ftp://x.example/"})
    assert bad.status_code == 422 and "url: a webhook URL starts with http:// or https://" in bad.content.decode()
    assert 'value="ftp://x.example/" aria-invalid="true"' in bad.content.decode()
    mail = client.post(
        "/t/acme/alerts/targets/add/", {"name": "mail", "kind": "email", "emails": "a@example.com, nope"}
    )
    assert mail.status_code == 422 and "E10707" in mail.content.decode()
    assert (
        client.post(
            "/t/acme/alerts/targets/add/", {"name": "pager", "kind": "webhook", "url": "https://hooks.example/x"}
        ).status_code
        == 302
    )
    pager = NotificationTarget.objects.get(tenant=tenant_a, name="pager")
    assert len(pager.secret) >= 40 and pager.secret in client.get("/t/acme/alerts/targets/").content.decode()
    assert AuditEntry.objects.filter(action="alert_target.create", resource_id=str(pager.pk)).exists()

    assert client.post("/t/acme/alerts/rules/new/", {**FORM, "targets": [str(pager.pk)]}).status_code == 302
    assert list(AlertRule.objects.get(name="CPU hot").targets.all()) == [pager]
    theirs = NotificationTarget.objects.create(
        tenant=tenant_b, name="x", kind="webhook", url="https://b.example", created_at=timezone.now()
    )
    refused = client.post("/t/acme/alerts/rules/new/", {**FORM, "name": "Other", "targets": [str(theirs.pk)]})
    assert refused.status_code == 422 and "E10707" in refused.content.decode()
    client.post(f"/t/acme/alerts/targets/{pager.pk}/delete/")
    assert not NotificationTarget.objects.filter(pk=pager.pk).exists()
