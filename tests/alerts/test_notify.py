"""Notifications against real receivers: a local HTTP server checks the webhook's
signature and answers 500 when told to; a local SMTP server (aiosmtpd) takes the e-mail
(alerts/notify.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings
from django.utils import timezone

from alerts import notify, services
from alerts.evaluation import evaluate_tenant
from alerts.models import Alert, AlertRule, Delivery, DeliveryState, NotificationTarget
from audit.services import Actor
from tests.alerts.conftest import NOW
from tests.conftest import free_port
from tests.realtime.conftest import settings_with

pytestmark = pytest.mark.django_db
SECRET = "s3cret-for-tests"


class Receiver:
    """A webhook receiver on 127.0.0.1: records what it got and whether the signature held."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_first = 0  # answer 500 to this many calls first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers["X-L10-Timestamp"]
                signed = self.headers["X-L10-Signature"] == notify.signature(SECRET, stamp, body)
                receiver.calls.append({"body": json.loads(body), "signed": signed})
                status = 500 if len(receiver.calls) <= receiver.fail_first else 204
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def local_webhooks() -> Iterator[None]:
    """The receivers here listen on 127.0.0.1, which webhooks may reach only when allowed."""
    with override_settings(L10=settings_with(L10_WEBHOOK_ALLOW_PRIVATE="1")):
        yield


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def rule(tenant_a, fleet) -> AlertRule:
    return AlertRule.objects.create(
        tenant=tenant_a, name="CPU hot", metric="cpu_percent", threshold=80, window_seconds=300, created_at=NOW,
        updated_at=NOW, severity="critical",
    )  # fmt: skip


def hook(tenant, rule, url: str) -> NotificationTarget:
    target = NotificationTarget.objects.create(
        tenant=tenant, name="pager", kind="webhook", url=url, secret=SECRET, created_at=NOW
    )
    rule.targets.add(target)
    return target


def test_a_storm_is_one_signed_message_naming_every_agent(tenant_a, rule, receiver, django_capture_on_commit_callbacks):
    hook(tenant_a, rule, receiver.url)
    with django_capture_on_commit_callbacks(execute=False):  # the worker's run is done here, by hand
        evaluate_tenant(tenant_a.pk, now=NOW)
    assert notify.deliver_due(now=NOW) == 1
    assert len(receiver.calls) == 1 and receiver.calls[0]["signed"]
    body = receiver.calls[0]["body"]
    assert body["kind"] == "firing" and body["rule"]["name"] == "CPU hot"
    assert sorted(a["agent"]["external_id"] for a in body["alerts"]) == ["hot", "other"]
    link = body["alerts"][0]["acknowledge_url"]
    assert link.startswith("http://127.0.0.1:8010/t/acme/alerts/") and "/ack/" in link
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.SENT and delivery.tries.get().status_code == 204


def test_a_failed_call_is_tried_again_after_a_backoff(tenant_a, rule, receiver):
    hook(tenant_a, rule, receiver.url)
    receiver.fail_first = 1
    evaluate_tenant(tenant_a.pk, now=NOW)
    notify.deliver_due(now=NOW)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.PENDING and delivery.next_attempt_at == NOW + timedelta(seconds=2)
    assert notify.deliver_due(now=NOW + timedelta(seconds=1)) == 0  # not yet
    assert notify.deliver_due(now=NOW + timedelta(seconds=2)) == 1
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT and [t.status_code for t in delivery.tries.all()] == [500, 204]


def test_retries_are_bounded(tenant_a, rule, receiver):
    hook(tenant_a, rule, receiver.url)
    receiver.fail_first = 100
    evaluate_tenant(tenant_a.pk, now=NOW)
    at = NOW
    for _ in range(10):
        notify.deliver_due(now=at)
        at += timedelta(minutes=1)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.FAILED and delivery.attempts == notify.MAX_ATTEMPTS
    assert len(receiver.calls) == notify.MAX_ATTEMPTS and "gave up after 5 attempts: HTTP 500" in delivery.note


def test_a_webhook_to_a_private_address_is_refused_unless_allowed(tenant_a, rule, receiver):
    hook(tenant_a, rule, receiver.url)
    evaluate_tenant(tenant_a.pk, now=NOW)
    with override_settings(L10=settings_with(L10_WEBHOOK_ALLOW_PRIVATE="0")):
        notify.deliver_due(now=NOW)
        assert notify.unreachable("http://localhost:9/x").startswith("localhost is 127.0.0.1, not a public address")
        assert "does not resolve" in notify.unreachable("http://no-such-host.invalid/x")
    attempt = Delivery.objects.get().tries.get()
    assert receiver.calls == [] and not attempt.ok and "not a public address" in attempt.error


def test_an_unreachable_receiver_counts_as_a_failed_attempt(tenant_a, rule):
    hook(tenant_a, rule, f"http://127.0.0.1:{free_port()}/nobody")
    evaluate_tenant(tenant_a.pk, now=NOW)
    notify.deliver_due(now=NOW)
    attempt = Delivery.objects.get().tries.get()
    assert not attempt.ok and "ConnectError" in attempt.error


def test_nothing_is_sent_for_acknowledged_or_snoozed_alerts(tenant_a, rule, receiver, operator_a):
    hook(tenant_a, rule, receiver.url)
    evaluate_tenant(tenant_a.pk, now=NOW)
    hot, other = Alert.objects.order_by("pk")
    services.alert_acknowledge(alert_id=hot.pk, actor=Actor(user=operator_a), now=NOW)
    services.alert_snooze(alert_id=other.pk, actor=Actor(user=operator_a), duration=timedelta(hours=1), now=NOW)
    notify.deliver_due(now=NOW)
    delivery = Delivery.objects.get()
    assert receiver.calls == [] and delivery.state == DeliveryState.SKIPPED and "acknowledged, snoozed" in delivery.note


def test_a_critical_alert_nobody_acknowledged_is_sent_again_and_resolving_is_sent(
    tenant_a, rule, receiver, operator_a, settings
):
    hook(tenant_a, rule, receiver.url)
    evaluate_tenant(tenant_a.pk, now=NOW)
    notify.deliver_due(now=NOW)
    hot, other = Alert.objects.order_by("pk")
    services.alert_acknowledge(alert_id=other.pk, actor=Actor(user=operator_a), now=NOW)
    later = NOW + timedelta(minutes=settings.L10.alert_renotify_minutes)
    assert notify.remind(now=later - timedelta(minutes=1)) == 0
    assert notify.remind(now=later) == 1
    notify.deliver_due(now=later)
    reminder = receiver.calls[-1]["body"]
    assert reminder["kind"] == "reminder" and [a["id"] for a in reminder["alerts"]] == [f"alert-{hot.pk}"]


def test_resolving_is_sent_too(tenant_a, rule, receiver, fleet):
    from fleet.models import MetricMinute

    hook(tenant_a, rule, receiver.url)
    evaluate_tenant(tenant_a.pk, now=NOW)
    notify.deliver_due(now=NOW)
    MetricMinute.objects.filter(agent=fleet[0]).update(cpu_sum=6 * 10.0)  # hot cools down
    evaluate_tenant(tenant_a.pk, now=NOW + timedelta(seconds=15))
    notify.deliver_due(now=NOW + timedelta(seconds=15))
    resolved = receiver.calls[-1]["body"]
    assert resolved["kind"] == "resolved" and [a["agent"]["external_id"] for a in resolved["alerts"]] == ["hot"]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


def test_e_mail_goes_through_a_real_smtp_server_with_text_and_html(tenant_a, rule):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        target = NotificationTarget.objects.create(
            tenant=tenant_a, name="on-call", kind="email", emails="oncall@example.com, lead@example.com", created_at=NOW
        )
        rule.targets.add(target)
        evaluate_tenant(tenant_a.pk, now=NOW)
        smtp = {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "127.0.0.1"}
        with override_settings(**smtp, EMAIL_PORT=controller.port):
            notify.deliver_due(now=NOW)
    finally:
        controller.stop()
    assert Delivery.objects.get().state == DeliveryState.SENT
    ((to, message),) = inbox.messages
    assert sorted(to) == ["lead@example.com", "oncall@example.com"]
    assert message["Subject"].startswith("[FIRING] Critical: CPU hot (2: ")
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk() if not p.is_multipart()}
    assert "Acknowledge: http://127.0.0.1:8010/t/acme/alerts/" in parts["text/plain"]
    assert ">Acknowledge</a>" in parts["text/html"]


def test_the_acknowledge_link_asks_to_sign_in_and_refuses_a_forged_or_old_link(
    tenant_a, rule, operator_a, time_machine
):
    from tests.conftest import client_for

    evaluate_tenant(tenant_a.pk, now=NOW)
    alert = Alert.objects.order_by("pk").first()
    assert alert is not None
    link = f"/t/acme/alerts/{alert.pk}/ack/{notify.ack_token(alert)}/"
    anonymous = client_for(None).get(link)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    page = client_for(operator_a).get(link).content.decode()
    assert 'data-testid="acknowledge"' in page
    alert.refresh_from_db()
    assert alert.acknowledged_at is None  # following the link alone changes nothing
    forged = client_for(operator_a).get(link.replace("/ack/", "/ack/x"))
    assert forged.status_code == 400 and "E10711" in forged.content.decode()
    time_machine.move_to(timezone.now() + notify.ACK_LINK_MAX_AGE + timedelta(minutes=1))
    old = client_for(operator_a).get(link)
    assert old.status_code == 400 and "E10711" in old.content.decode()
