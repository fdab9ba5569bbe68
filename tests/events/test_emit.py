"""One way to record an event from anywhere (events.services.emit): a state change, a
control action, an alert firing, resolving or acknowledged are stored with what they
link to, and every stored event goes out on the tenant's ``event`` topic after commit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from alerts.evaluation import evaluate_tenant
from alerts.models import Alert
from alerts.services import alert_acknowledge
from audit.models import AuditEntry
from audit.services import Actor
from control.rules import Action, ControlRequest
from control.services import control_execute
from core.errors import InterfaceError
from events.models import Event
from events.services import TAIL_BATCH, NewEvent, emit, events_record
from fleet import services as fleet_services
from fleet.models import ObservedState
from realtime import hub
from tests.alerts.conftest import NOW, fleet  # noqa: F401 - a fixture
from tests.alerts.test_evaluation import make_rule
from tests.realtime.conftest import events_socket, frame, subscribe

pytestmark = pytest.mark.django_db


def test_a_control_action_is_an_event_that_links_to_its_audit_entry(tenant_a, operator_a, agent_a):
    control_execute(
        tenant=tenant_a,
        actor=Actor(user=operator_a),
        request=ControlRequest(Action.PAUSE, str(agent_a.pk), reason="db"),
    )
    event = Event.objects.get(type="control.pause")
    entry = AuditEntry.objects.get(action="agent.pause")
    assert (event.tenant_id, event.agent_id, event.severity) == (tenant_a.pk, agent_a.pk, "warning")
    assert event.data["audit_id"] == entry.pk and event.data["by"] == "oscar" and event.data["reason"] == "db"
    assert event.data["change"] == {"desired_state": {"from": "running", "to": "paused"}}
    assert event.message == "pause of worker-1 by oscar: db"


def test_a_refused_or_idle_control_action_is_no_event(tenant_a, viewer_a, operator_a, agent_a):
    with pytest.raises(InterfaceError):
        control_execute(
            tenant=tenant_a, actor=Actor(user=viewer_a), request=ControlRequest(Action.PAUSE, str(agent_a.pk))
        )
    control_execute(
        tenant=tenant_a, actor=Actor(user=operator_a), request=ControlRequest(Action.RESUME, str(agent_a.pk))
    )
    assert not Event.objects.filter(type__startswith="control.").exists()  # a denied one and a no-op
    assert AuditEntry.objects.filter(resource_type="agent").count() == 2


def test_an_observed_state_change_is_an_event_and_a_repeat_is_not(tenant_a, agent_a):
    fleet_services.agent_state_report(agent=agent_a, state=ObservedState.ERROR)
    fleet_services.agent_state_report(agent=agent_a, state=ObservedState.ERROR)
    (event,) = Event.objects.filter(type="agent.state_changed")
    assert event.agent_id == agent_a.pk and event.severity == "error"
    assert event.data == {"state": "error", "previous_state": "starting", "desired_state": "running"}


def test_alerts_firing_resolving_and_acknowledged_are_events(tenant_a, operator_a, fleet):  # noqa: F811
    rule = make_rule(tenant_a)
    evaluate_tenant(tenant_a.pk, now=NOW)
    fired = Event.objects.filter(type="alert.firing").order_by("agent__external_id")
    alerts = {a.agent_id: a for a in Alert.objects.filter(rule=rule)}
    assert [e.agent.external_id for e in fired if e.agent] == ["hot", "other"]
    assert all(e.data["alert_id"] == alerts[e.agent_id].pk and e.severity == "warning" for e in fired)
    assert not Event.objects.filter(type="alert.pending").exists()  # only what people are told of

    hot = alerts[fleet[0].pk]
    alert_acknowledge(alert_id=hot.pk, actor=Actor(user=operator_a), tenant_id=tenant_a.pk, comment="on it")
    acked = Event.objects.get(type="alert.acknowledge")
    assert acked.data["alert_id"] == hot.pk and acked.data["by"] == "oscar"
    assert acked.data["audit_id"] == AuditEntry.objects.get(action="alert.acknowledge").pk

    rule.threshold = 99.0
    rule.save()
    evaluate_tenant(tenant_a.pk, now=NOW + timedelta(minutes=1))
    assert Event.objects.filter(type="alert.resolved").count() == 2


def test_an_event_recorded_in_a_transaction_that_rolls_back_is_neither_stored_nor_published(tenant_a, agent_a):
    before = hub.current_seq(tenant_a.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        emit(tenant_a.pk, "note.added", agent_id=agent_a.pk, message="never")
        raise RuntimeError
    assert not Event.objects.filter(type="note.added").exists()
    assert hub.current_seq(tenant_a.pk) == before


@pytest.mark.redis
def test_the_tail_hears_each_stored_event_after_commit_and_only_its_tenants(
    asgi_server, tenant_a, tenant_b, viewer_a, agent_a, agent_b
):
    with events_socket(asgi_server, "acme", user=viewer_a) as ws:
        subscribe(ws, "events.stored")
        before = hub.current_seq(tenant_a.pk)
        with transaction.atomic():
            emit(tenant_b.pk, "note.added", agent_id=agent_b.pk, message="theirs")
            emit(
                tenant_a.pk,
                "note.added",
                agent_id=agent_a.pk,
                external_id=agent_a.external_id,
                message="ours",
                data={"n": 1},
            )
            assert hub.current_seq(tenant_a.pk) == before  # nothing goes out before the commit
        told = frame(ws)
        stored = Event.objects.get(tenant=tenant_a, type="note.added")
        assert told["topic"] == "events.stored" and told["data"]["omitted"] == 0
        assert told["data"]["events"] == [{
            "id": stored.pk, "event_type": "note.added", "severity": "info", "agent_id": str(agent_a.pk),
            "external_id": agent_a.external_id, "message": "ours", "data": {"n": 1},
            "timestamp": told["data"]["events"][0]["timestamp"],
        }]  # fmt: skip

        # Events an agent reports go out the same way; big data stays on the event's page.
        # A batch is one word with its newest events; big data stays on the event's page.
        now = timezone.now()
        batch = [NewEvent(type="task.completed", occurred_at=now, message=f"n{n}") for n in range(TAIL_BATCH + 5)]
        batch.append(NewEvent(type="task.completed", occurred_at=now, data={"log": "x" * 5000}))
        events_record(tenant_id=tenant_a.pk, events=batch)
        told = frame(ws)
        sent = told["data"]["events"]
        assert len(sent) == TAIL_BATCH and told["data"]["omitted"] == 6
        assert sent[0]["message"] == "n6" and sent[-2]["message"] == f"n{TAIL_BATCH + 4}"
        assert sent[-1]["data"] is None and sent[-1]["data_cut"] is True
