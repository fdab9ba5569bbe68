"""A new approval request told to the tenant's notification targets (alerts/approvals.py,
through alerts/notify.py's delivery), against real receivers: a local HTTP server that
checks the webhook's signature, a local SMTP server (aiosmtpd) for the e-mail."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

from alerts import approvals as notices
from alerts import notify
from alerts.models import Delivery, DeliveryState, Notification, NotificationTarget
from approvals.models import ApprovalRequest
from approvals.services import NewRequest, decide, expire_due, request_create, rule_add
from audit.models import AuditEntry
from audit.services import Actor
from tests.alerts.test_notify import SECRET, Inbox, Receiver
from tests.conftest import client_for, free_port
from tests.realtime.conftest import settings_with

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen(time_machine) -> None:
    time_machine.move_to(NOW, tick=False)


@pytest.fixture(autouse=True)
def enqueued(monkeypatch) -> list[str]:
    """The tasks started after commit, recorded and not run: each test delivers by hand,
    as the worker's run would (an embedded run would start it in a thread of its own)."""
    names: list[str] = []
    monkeypatch.setattr("core.runner.enqueue", lambda name, *args, **kwargs: names.append(name))
    return names


@pytest.fixture(autouse=True)
def local_webhooks() -> Iterator[None]:
    """The receivers listen on 127.0.0.1, which webhooks may reach only when allowed."""
    with override_settings(L10=settings_with(L10_WEBHOOK_ALLOW_PRIVATE="1")):
        yield


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def target(tenant, name: str = "pager", url: str = "", **fields: Any) -> NotificationTarget:
    kind = "webhook" if url else "email"
    return NotificationTarget.objects.create(
        tenant=tenant, name=name, kind=kind, url=url, secret=SECRET if url else "", created_at=NOW, **fields
    )


def ask(agent, django_capture_on_commit_callbacks, **extra: Any) -> ApprovalRequest:
    """An agent asks, and what its commit sets off runs (the signal, then the enqueue)."""
    with django_capture_on_commit_callbacks(execute=True):
        request, _ = request_create(
            agent=agent, new=NewRequest("email.send", "Mail 40 customers about the outage", **extra)
        )
    return request


def test_a_new_request_is_a_signed_webhook_saying_what_is_asked_who_decides_and_where(
    tenant_a, agent_a, receiver, enqueued, django_capture_on_commit_callbacks
):
    target(tenant_a, url=receiver.url)
    request = ask(agent_a, django_capture_on_commit_callbacks, timeout=timedelta(minutes=30))
    assert Notification.objects.get().approval == request and "alerts.tasks.deliver" in enqueued
    assert notify.deliver_due(now=NOW) == 1
    ((call,),) = [receiver.calls]
    assert call["signed"]
    body = call["body"]
    assert (body["kind"], body["tenant"]) == ("approval", "acme")
    approval = body["approval"]
    assert approval["id"] == str(request.pk) and approval["action"] == "email.send"
    assert approval["summary"] == "Mail 40 customers about the outage"
    assert approval["agent"] == {"id": str(agent_a.pk), "name": "Worker 1", "external_id": "worker-1"}
    assert approval["who_may_decide"] == "An operator or admin of acme may decide"
    assert approval["time_left"] == "30 min left (until 2026-11-30 12:30 UTC); then it is rejected"
    assert approval["url"] == f"http://127.0.0.1:8010/t/acme/approvals/{request.pk}/"
    assert "details" not in approval  # the page shows them, behind sign-in
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.SENT and delivery.tries.get().status_code == 204


def test_only_the_tenants_enabled_targets_that_take_approvals_are_told(
    tenant_a, tenant_b, agent_a, receiver, django_capture_on_commit_callbacks
):
    told = target(tenant_a, "told", url=receiver.url)
    target(tenant_a, "switched off", url=receiver.url, approvals=False)
    target(tenant_a, "disabled", url=receiver.url, enabled=False)
    target(tenant_b, "theirs", url=receiver.url)
    ask(agent_a, django_capture_on_commit_callbacks)
    assert [d.target for d in Delivery.objects.all()] == [told]
    notify.deliver_due(now=NOW)
    assert len(receiver.calls) == 1


def test_nothing_is_made_without_a_target(agent_a, django_capture_on_commit_callbacks):
    ask(agent_a, django_capture_on_commit_callbacks)
    assert not Notification.objects.exists()


def test_a_request_is_told_once_however_often_it_is_signalled(tenant_a, agent_a, receiver):
    target(tenant_a, url=receiver.url)
    request, _ = request_create(agent=agent_a, new=NewRequest("email.send", "Mail them"))
    assert notices.approval_notify(request=request) is not None
    assert notices.approval_notify(request=request) is None
    assert Notification.objects.count() == 1 and Delivery.objects.count() == 1


def test_the_e_mail_goes_through_a_real_smtp_server_with_the_summary_who_time_and_link(
    tenant_a, agent_a, admin_a, django_capture_on_commit_callbacks
):
    rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), action="email.*", needs_role="admin")
    target(tenant_a, "on-call", emails="oncall@example.com, lead@example.com")
    request = ask(agent_a, django_capture_on_commit_callbacks, timeout=timedelta(hours=2), on_timeout="approve")
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        smtp = {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "127.0.0.1"}
        with override_settings(**smtp, EMAIL_PORT=controller.port):
            notify.deliver_due(now=NOW + timedelta(minutes=5))
    finally:
        controller.stop()
    assert Delivery.objects.get().state == DeliveryState.SENT
    ((to, message),) = inbox.messages
    assert sorted(to) == ["lead@example.com", "oncall@example.com"]
    assert message["Subject"] == "Approval needed: email.send by Worker 1"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk() if not p.is_multipart()}
    text, html = parts["text/plain"], parts["text/html"]
    link = f"http://127.0.0.1:8010/t/acme/approvals/{request.pk}/"
    assert "Mail 40 customers about the outage" in text and "An admin of acme may decide." in text
    assert "1 h 55 min left (until 2026-11-30 14:00 UTC); then it is approved." in text
    assert f"Approve or reject: {link}" in text
    assert f'<a href="{link}">Approve or reject</a>' in html and "Mail 40 customers about the outage" in html


def test_a_request_decided_or_run_out_before_sending_is_not_sent(
    tenant_a, agent_a, operator_a, receiver, django_capture_on_commit_callbacks
):
    target(tenant_a, url=receiver.url)
    decided = ask(agent_a, django_capture_on_commit_callbacks, key="decided")
    decide(request_id=decided.pk, tenant_id=tenant_a.pk, actor=Actor(user=operator_a), role="operator", approve=True)
    short = ask(agent_a, django_capture_on_commit_callbacks, key="short", timeout=timedelta(seconds=30))
    expired = ask(agent_a, django_capture_on_commit_callbacks, key="expired", timeout=timedelta(seconds=30))
    expire_due(now=NOW + timedelta(minutes=1), limit=1)  # one of the two is decided by its timeout
    notify.deliver_due(now=NOW + timedelta(minutes=1))
    assert receiver.calls == []
    notes = {d.notification.approval_id: d.note for d in Delivery.objects.select_related("notification")}
    assert all(d.state == DeliveryState.SKIPPED for d in Delivery.objects.all())
    assert notes[decided.pk] == "the request was approved by oscar before it could be sent"
    gone = {notes[short.pk], notes[expired.pk]}
    assert gone == {
        "the request was expired by timeout before it could be sent",
        "the request ran out before it could be sent",
    }


def test_a_failed_call_is_tried_again_as_an_alerts_is(tenant_a, agent_a, receiver, django_capture_on_commit_callbacks):
    target(tenant_a, url=receiver.url)
    receiver.fail_first = 1
    ask(agent_a, django_capture_on_commit_callbacks)
    notify.deliver_due(now=NOW)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.PENDING and delivery.next_attempt_at == NOW + notify.BACKOFF_FIRST
    notify.deliver_due(now=NOW + notify.BACKOFF_FIRST)
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT and [t.status_code for t in delivery.tries.all()] == [500, 204]


def test_two_approvers_are_named_in_the_message(tenant_a, agent_a, admin_a):
    rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), needs_approvers=2)
    request, _ = request_create(agent=agent_a, new=NewRequest("email.send", "Mail them"))
    assert notices.who_may_decide(request) == (
        "Two different people (operators or admins) of acme must approve; one rejection decides"
    )


def test_a_failure_to_tell_the_targets_never_reaches_the_agent(
    tenant_a, agent_a, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("the store is down")

    monkeypatch.setattr(notices, "approval_notify", broken)
    with caplog.at_level(logging.ERROR, logger="alerts.approvals"):
        request = ask(agent_a, django_capture_on_commit_callbacks)
    assert ApprovalRequest.objects.filter(pk=request.pk).exists()
    assert "could not be told to the notification targets" in caplog.text


# --- the switch on the targets page ---------------------------------------------------------


def test_an_admin_turns_a_targets_approval_requests_off_and_on_and_it_is_audited(tenant_a, admin_a):
    pager = target(tenant_a, url="https://hooks.example.com/x")
    url = f"/t/acme/alerts/targets/{pager.pk}/approvals/"
    page = client_for(admin_a).get("/t/acme/alerts/targets/").content.decode()
    assert 'data-testid="target-approvals"' in page and "Turn off" in page
    assert client_for(admin_a).post(url, {"approvals": "off"}).status_code == 302
    pager.refresh_from_db()
    assert not pager.approvals
    assert "Turn on" in client_for(admin_a).get("/t/acme/alerts/targets/").content.decode()
    client_for(admin_a).post(url, {"approvals": "on"})
    pager.refresh_from_db()
    assert pager.approvals
    entries = AuditEntry.objects.filter(action="alert_target.update").order_by("pk")
    assert [e.delta["approvals"] for e in entries] == [{"from": True, "to": False}, {"from": False, "to": True}]


def test_only_an_admin_switches_and_only_their_tenants_targets(tenant_a, tenant_b, operator_a, admin_a):
    pager = target(tenant_a, url="https://hooks.example.com/x")
    theirs = target(tenant_b, url="https://hooks.example.com/y")
    assert client_for(operator_a).post(f"/t/acme/alerts/targets/{pager.pk}/approvals/", {}).status_code == 403
    client_for(admin_a).post(f"/t/acme/alerts/targets/{theirs.pk}/approvals/", {})
    pager.refresh_from_db()
    theirs.refresh_from_db()
    assert pager.approvals and theirs.approvals
    assert not AuditEntry.objects.filter(action="alert_target.update").exists()
