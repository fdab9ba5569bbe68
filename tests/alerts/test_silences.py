"""Silences (maintenance windows): by label selector, for a time range, made ahead of
time too; while one lasts its agents' alerts are sent to nobody and leave the badge."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts import notify, selectors, services
from alerts.evaluation import evaluate_tenant
from alerts.models import AlertRule, Delivery, DeliveryState, NotificationTarget, Silence
from alerts.rules import silence_spec
from audit.models import AuditEntry
from audit.services import Actor
from core.errors import ErrorCode, InterfaceError
from tests.alerts.conftest import NOW
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def firing(tenant_a, fleet):
    rule = AlertRule.objects.create(
        tenant=tenant_a, name="CPU hot", metric="cpu_percent", threshold=80, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    rule.targets.add(
        NotificationTarget.objects.create(
            tenant=tenant_a, name="nowhere", kind="webhook", url="http://127.0.0.1:9/", created_at=NOW
        )
    )
    evaluate_tenant(tenant_a.pk, now=NOW)  # hot (team=search) and other (team=ads) fire
    return rule


def test_a_silence_hides_its_agents_from_the_badge_and_the_messages_while_it_lasts(tenant_a, firing, operator_a):
    assert selectors.attention_count(tenant_a.pk, NOW) == 2
    spec = silence_spec({"matcher": "team=search", "hours": "2", "comment": "reindex"}, NOW)
    services.silence_create(tenant=tenant_a, spec=spec, actor=Actor(user=operator_a))
    assert selectors.attention_count(tenant_a.pk, NOW) == 1  # the search agent's alert is silenced
    assert selectors.attention_count(tenant_a.pk, NOW + timedelta(hours=2)) == 2  # the window is over
    notify.deliver_due(now=NOW)
    delivery = Delivery.objects.get()
    # "other" is not silenced: the message goes out (and fails: nothing listens on port 9).
    assert delivery.tries.count() == 1 and delivery.state == DeliveryState.PENDING
    assert AuditEntry.objects.filter(action="alert_silence.create", reason="reindex").exists()


def test_a_message_whose_every_alert_is_silenced_is_not_sent(tenant_a, firing, operator_a):
    spec = silence_spec({"matcher": "team in (search,ads)", "hours": "1"}, NOW)
    services.silence_create(tenant=tenant_a, spec=spec, actor=Actor(user=operator_a))
    notify.deliver_due(now=NOW)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.SKIPPED and "silenced" in delivery.note and delivery.tries.count() == 0


def test_a_silence_made_ahead_of_time_starts_later_and_can_be_ended(tenant_a, firing, operator_a):
    spec = silence_spec({"matcher": "team=ads", "starts_at": "2026-11-30 14:00", "ends_at": "2026-11-30 16:00"}, NOW)
    silence = services.silence_create(tenant=tenant_a, spec=spec, actor=Actor(user=operator_a))
    assert selectors.attention_count(tenant_a.pk, NOW) == 2
    assert selectors.attention_count(tenant_a.pk, NOW.replace(hour=15)) == 1
    services.silence_expire(tenant=tenant_a, silence_id=silence.pk, actor=Actor(user=operator_a), now=NOW)
    silence.refresh_from_db()
    assert silence.ends_at == silence.starts_at  # a silence not yet begun ends before it begins
    assert selectors.attention_count(tenant_a.pk, NOW.replace(hour=15)) == 2


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        ({"matcher": "", "hours": "1"}, ErrorCode.ALERT_BAD_SCOPE, "matcher"),
        ({"matcher": "team==", "hours": "1"}, ErrorCode.ALERT_BAD_SCOPE, "matcher"),
        ({"matcher": "team=a", "hours": "NaN"}, ErrorCode.ALERT_BAD_SILENCE, "hours"),
        ({"matcher": "team=a", "hours": "-1"}, ErrorCode.ALERT_BAD_SILENCE, "ends_at"),
        ({"matcher": "team=a", "ends_at": "2026-11-30 11:00"}, ErrorCode.ALERT_BAD_SILENCE, "ends_at"),
        ({"matcher": "team=a", "hours": str(31 * 24)}, ErrorCode.ALERT_BAD_SILENCE, "ends_at"),
        ({"matcher": "team=a", "ends_at": "tomorrow"}, ErrorCode.ALERT_BAD_SILENCE, "ends_at"),
    ],
)
def test_a_bad_silence_is_refused_naming_the_field(data, code, field):
    with pytest.raises(InterfaceError) as caught:
        silence_spec(data, NOW)
    assert caught.value.code == code and caught.value.message.startswith(f"{field}: ")


def test_the_silences_page(tenant_a, firing, operator_a, viewer_a):
    client = client_for(operator_a)
    refused = client.post("/t/acme/alerts/silences/add/", {"matcher": "team=search", "hours": "0"})
    assert refused.status_code == 422 and "E10712" in refused.content.decode()
    assert client.post("/t/acme/alerts/silences/add/", {"matcher": "team=search", "hours": "2"}).status_code == 302
    silence = Silence.objects.get()
    page = client_for(viewer_a).get("/t/acme/alerts/silences/").content.decode()
    assert "team=search" in page and "End now" not in page  # a viewer reads, and does no more
    listed = client_for(viewer_a).get("/t/acme/alerts/").content.decode()
    assert listed.count('data-testid="silenced"') == 1
    client.post(f"/t/acme/alerts/silences/{silence.pk}/expire/")
    silence.refresh_from_db()
    assert not silence.active(silence.ends_at)
