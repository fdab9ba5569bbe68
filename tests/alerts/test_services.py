"""What on-call people do to alerts, and rules as submitted: roles, tenants, audit, and
every bad input refused with its own code (alerts/services.py, alerts/rules.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from alerts import selectors, services
from alerts.models import Alert, AlertRule, AlertState, AlertTransition
from alerts.rules import rule_spec
from audit.models import AuditEntry
from audit.services import Actor
from core.errors import ErrorCode, InterfaceError
from tenancy.models import Tenant
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def firing(tenant_a) -> Alert:
    rule = next(r for r in services.default_rules(tenant_a) if r.name == "Agent unresponsive")
    agent = AgentFactory.create(tenant=tenant_a)
    return Alert.objects.create(
        tenant=tenant_a, rule=rule, agent=agent, fingerprint=f"agent:{agent.pk}", state=AlertState.FIRING,
        severity="critical", message="Agent unresponsive: 120 s", started_at=NOW, fired_at=NOW, evaluated_at=NOW,
    )  # fmt: skip


def refused(code: ErrorCode, fn, **kwargs) -> InterfaceError:
    with pytest.raises(InterfaceError) as caught:
        fn(**kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def test_a_new_tenant_gets_the_default_rules(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        tenant = Tenant.objects.create(slug="initech", name="Initech")
    names = set(AlertRule.objects.filter(tenant=tenant).values_list("name", flat=True))
    assert names == {
        "Agent unresponsive",
        "Error rate above 5 %",
        "Quota use above 80 %",
        "Emergency stop not confirmed",
        "Budget 50 % used",
        "Budget 80 % used",
        "Budget used up",
    }
    assert services.default_rules(tenant) and AlertRule.objects.filter(tenant=tenant).count() == 7  # idempotent


def test_an_operator_acknowledges_and_the_badge_drops(firing, operator_a, tenant_a):
    assert selectors.attention_count(tenant_a.pk, NOW) == 1
    alert = services.alert_acknowledge(alert_id=firing.pk, actor=Actor(user=operator_a), comment="on it", now=NOW)
    assert alert.acknowledged_by == operator_a and alert.ack_comment == "on it"
    assert selectors.attention_count(tenant_a.pk, NOW) == 0
    entry = AuditEntry.objects.get(action="alert.acknowledge")
    assert entry.actor == operator_a and entry.resource_id == str(firing.pk) and entry.outcome == "success"
    assert AlertTransition.objects.get(alert=firing).note == "acknowledge by oscar: on it"
    services.alert_unacknowledge(alert_id=firing.pk, actor=Actor(user=operator_a))
    assert selectors.attention_count(tenant_a.pk, NOW) == 1


def test_an_acknowledgement_with_an_expiry_lapses_and_the_alert_needs_attention_again(firing, operator_a, tenant_a):
    services.alert_acknowledge(
        alert_id=firing.pk, actor=Actor(user=operator_a), until=NOW + timedelta(hours=1), now=NOW
    )  # fmt: skip
    assert selectors.attention_count(tenant_a.pk, NOW + timedelta(minutes=59)) == 0
    assert selectors.attention_count(tenant_a.pk, NOW + timedelta(hours=1)) == 1


def test_a_snooze_wakes_by_itself(firing, operator_a, tenant_a):
    alert = services.alert_snooze(
        alert_id=firing.pk, actor=Actor(user=operator_a), duration=timedelta(hours=4), now=NOW
    )
    assert alert.snoozed_until == NOW + timedelta(hours=4)
    assert selectors.attention_count(tenant_a.pk, NOW + timedelta(hours=3)) == 0
    assert selectors.attention_count(tenant_a.pk, NOW + timedelta(hours=4)) == 1
    listed = selectors.alert_list(tenant_a.pk, selectors.AlertFilter(status="snoozed"), NOW + timedelta(hours=1))
    assert list(listed) == [firing]  # snoozed alerts stay visible


def test_roles_and_tenants_are_checked_on_every_action(firing, viewer_a, operator_b, operator_a):
    error = refused(
        ErrorCode.PERMISSION_DENIED, services.alert_acknowledge, alert_id=firing.pk, actor=Actor(user=viewer_a)
    )
    assert "operator" in error.message
    refused(
        ErrorCode.PERMISSION_DENIED,
        services.alert_snooze,
        alert_id=firing.pk,
        actor=Actor(user=viewer_a),
        duration=timedelta(hours=1),
    )
    refused(ErrorCode.ALERT_NOT_FOUND, services.alert_acknowledge, alert_id=firing.pk, actor=Actor(user=operator_b))
    refused(
        ErrorCode.ALERT_NOT_FOUND,
        services.alert_acknowledge,
        alert_id=firing.pk,
        actor=Actor(user=operator_a),
        tenant_id=firing.tenant_id + 999,
    )
    # The refusals inside the tenant are audited; the outsider learns nothing, and leaves no row.
    assert list(AuditEntry.objects.filter(outcome="denied").order_by("id").values_list("action", "actor")) == [
        ("alert.acknowledge", viewer_a.pk), ("alert.snooze", viewer_a.pk),
    ]  # fmt: skip
    firing.refresh_from_db()
    assert firing.acknowledged_at is None and firing.snoozed_until is None


def test_a_resolved_alert_cannot_be_acknowledged_or_snoozed(firing, operator_a):
    Alert.objects.filter(pk=firing.pk).update(state=AlertState.RESOLVED, ended_at=NOW)
    refused(ErrorCode.ALERT_NOT_OPEN, services.alert_acknowledge, alert_id=firing.pk, actor=Actor(user=operator_a))
    refused(
        ErrorCode.ALERT_NOT_OPEN,
        services.alert_snooze,
        alert_id=firing.pk,
        actor=Actor(user=operator_a),
        duration=timedelta(hours=1),
    )
    Alert.objects.filter(pk=firing.pk).update(state=AlertState.FIRING)
    refused(
        ErrorCode.ALERT_BAD_SNOOZE,
        services.alert_snooze,
        alert_id=firing.pk,
        actor=Actor(user=operator_a),
        duration=timedelta(days=8),
    )
    refused(
        ErrorCode.ALERT_BAD_SNOOZE,
        services.alert_snooze,
        alert_id=firing.pk,
        actor=Actor(user=operator_a),
        duration=-timedelta(hours=1),
    )


GOOD = {"name": "CPU hot", "metric": "cpu_percent", "threshold": "80", "window_seconds": "300"}


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"metric": "gpu"}, ErrorCode.ALERT_UNKNOWN_METRIC, "metric"),
        ({"window_seconds": "NaN"}, ErrorCode.ALERT_BAD_WINDOW, "window_seconds"),
        ({"window_seconds": "-60"}, ErrorCode.ALERT_BAD_WINDOW, "window_seconds"),
        ({"window_seconds": "0"}, ErrorCode.ALERT_BAD_WINDOW, "window_seconds"),
        ({"window_seconds": "90.5"}, ErrorCode.ALERT_BAD_WINDOW, "window_seconds"),
        ({"for_seconds": str(10 * 86400)}, ErrorCode.ALERT_FOR_TOO_LONG, "for_seconds"),
        ({"threshold": "eighty"}, ErrorCode.ALERT_BAD_THRESHOLD, "threshold"),
        ({"threshold": "inf"}, ErrorCode.ALERT_BAD_THRESHOLD, "threshold"),
        ({"threshold": ""}, ErrorCode.ALERT_BAD_THRESHOLD, "threshold"),
        ({"resolve_threshold": "90"}, ErrorCode.ALERT_BAD_THRESHOLD, "resolve_threshold"),
        ({"scope": "selector", "selector": ""}, ErrorCode.ALERT_BAD_SCOPE, "selector"),
        ({"selector": "team=="}, ErrorCode.ALERT_BAD_SCOPE, "selector"),
        ({"agent": "not-an-id"}, ErrorCode.ALERT_BAD_SCOPE, "agent"),
        ({"name": "a\x00b"}, ErrorCode.ALERT_RULE_INVALID, "name"),
        ({"name": ""}, ErrorCode.ALERT_RULE_INVALID, "name"),
        ({"severity": "apocalyptic"}, ErrorCode.ALERT_RULE_INVALID, "severity"),
        ({"colour": "red"}, ErrorCode.ALERT_RULE_INVALID, "colour"),
    ],
)
def test_a_bad_rule_is_refused_with_its_own_code_naming_the_field(changes, code, field):
    with pytest.raises(InterfaceError) as caught:
        rule_spec({**GOOD, **changes})
    assert caught.value.code == code
    assert caught.value.message.startswith(f"{field}: ")


def test_a_good_rule_parses_with_its_defaults():
    spec = rule_spec({**GOOD, "threshold": 80.5, "for_seconds": "120", "selector": "team=search"})
    assert (spec.threshold, spec.for_seconds, spec.min_samples, spec.no_data, spec.selector) == (
        80.5,
        120,
        1,
        "ok",
        "team=search",
    )
    assert not math.isnan(spec.threshold)


def test_rule_changes_need_an_admin_are_audited_and_names_are_unique(tenant_a, admin_a, operator_a):
    spec = rule_spec(GOOD)
    refused(ErrorCode.PERMISSION_DENIED, services.rule_create, tenant=tenant_a, spec=spec, actor=Actor(user=operator_a))
    rule = services.rule_create(tenant=tenant_a, spec=spec, actor=Actor(user=admin_a))
    refused(ErrorCode.ALERT_RULE_INVALID, services.rule_create, tenant=tenant_a, spec=spec, actor=Actor(user=admin_a))
    services.rule_update(
        tenant=tenant_a, rule_id=rule.pk, spec=rule_spec({**GOOD, "threshold": "85"}), actor=Actor(user=admin_a)
    )
    update = AuditEntry.objects.get(action="alert_rule.update")
    assert update.delta == {"threshold": {"from": 80.0, "to": 85.0}}
