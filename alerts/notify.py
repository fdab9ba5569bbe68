"""Alert notifications (docs/alerts.md, "Notifications").

- **When:** an evaluation that fires or resolves alerts makes one ``Notification`` per rule
  and kind, naming every alert of it (a storm is one message), with one ``Delivery`` per
  enabled target of the rule. A critical alert still firing and unacknowledged is named
  again (``reminder``) every ``L10_ALERT_RENOTIFY_MINUTES``.
- **Never while handled:** at sending time, alerts that are acknowledged (and the
  acknowledgement has not lapsed) or snoozed are left out; a message left with none is not
  sent (``skipped``, with the reason).
- **Delivery:** ``deliver_due`` claims due deliveries with ``SKIP LOCKED`` and a lease, so
  two workers never send one twice, then sends outside any transaction. A failure is tried
  again after 2, 4, 8 and 16 s, at most ``MAX_ATTEMPTS`` times; every attempt is stored and
  shown on the alert.
- **Webhook:** a JSON ``POST`` with ``X-L10-Timestamp`` and ``X-L10-Signature: sha256=<hex>``,
  the HMAC-SHA256 of ``<timestamp>.<body>`` under the target's secret, within ``TIMEOUT``.
- **E-mail:** through Django's e-mail backend, with a subject and text and HTML parts.
- **Approval requests** (alerts/approvals.py) are sent by the same machinery, to every
  target that takes them; one no longer pending at sending time is skipped.
- Each alert carries a signed link to acknowledge it (``ack_token``), valid for
  ``ACK_LINK_MAX_AGE``; it leads to a page that still asks to sign in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from alerts import approvals as approval_notices
from alerts.models import (
    Alert,
    AlertRule,
    AlertState,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Notification,
    NotificationKind,
    Severity,
    TargetKind,
)
from alerts.selectors import silenced_agents
from core import runner

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_FIRST = timedelta(seconds=2)
LEASE = timedelta(minutes=2)  # a claimed delivery is another worker's again after this
TIMEOUT = 5.0  # seconds for one webhook call
ACK_LINK_MAX_AGE = timedelta(hours=24)
ACK_SALT = "alerts.ack-link"


def ack_token(alert: Alert) -> str:
    return signing.dumps({"alert": alert.pk, "tenant": alert.tenant_id}, salt=ACK_SALT, compress=True)


def read_ack_token(token: str) -> dict[str, int] | None:
    """The alert a link names, or None when the link is forged, altered or too old."""
    try:
        data = signing.loads(token, salt=ACK_SALT, max_age=ACK_LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    return data if isinstance(data, dict) else None


# --- making notifications ---------------------------------------------------------------------


def notify(rule: AlertRule, kind: str, alerts: list[Alert], now: datetime) -> Notification | None:
    """One message of ``rule`` naming ``alerts``, to each enabled target; sent once the
    caller's transaction commits."""
    targets = list(rule.targets.filter(enabled=True))
    if not alerts or not targets:
        return None
    notification = Notification.objects.create(tenant_id=rule.tenant_id, rule=rule, kind=kind, created_at=now)
    notification.alerts.set(alerts)
    Delivery.objects.bulk_create([Delivery(notification=notification, target=t, next_attempt_at=now) for t in targets])
    Alert.objects.filter(pk__in=[a.pk for a in alerts]).update(notified_at=now)
    runner.enqueue("alerts.tasks.deliver")
    return notification


def remind(now: datetime | None = None) -> int:
    """Critical alerts firing, unacknowledged and unsnoozed, named last longer ago than
    ``L10_ALERT_RENOTIFY_MINUTES``: one reminder per rule. The number of messages made."""
    now = now or timezone.now()
    due = now - timedelta(minutes=settings.L10.alert_renotify_minutes)
    made = 0
    with transaction.atomic():
        stale = list(
            Alert.objects.select_for_update(skip_locked=True)
            .filter(
                handled_q(now, negate=True), state=AlertState.FIRING, severity=Severity.CRITICAL, notified_at__lte=due
            )
            .select_related("rule")
        )
        by_rule: dict[int, list[Alert]] = {}
        silenced: dict[int, set[UUID]] = {}
        for alert in stale:
            if alert.tenant_id not in silenced:
                silenced[alert.tenant_id] = silenced_agents(alert.tenant_id, now)
            if alert.agent_id not in silenced[alert.tenant_id]:
                by_rule.setdefault(alert.rule_id, []).append(alert)
        for alerts in by_rule.values():
            made += notify(alerts[0].rule, NotificationKind.REMINDER, alerts, now) is not None
    return made


def handled_q(now: datetime, *, negate: bool = False) -> Q:
    """Acknowledged (and not lapsed) or snoozed: nobody is to be told of it now."""
    acked = Q(acknowledged_at__isnull=False) & (Q(acknowledged_until__isnull=True) | Q(acknowledged_until__gt=now))
    q = acked | Q(snoozed_until__gt=now)
    return ~q if negate else q


# --- delivering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""


def deliver_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Try every due delivery once; the number tried."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")[:limit]
        )
        Delivery.objects.filter(pk__in=[d.pk for d in claimed]).update(next_attempt_at=now + LEASE)
    for delivery in claimed:
        try:
            _attempt(delivery.pk, now)
        except Exception:  # the store failed mid-way: its lease lapses, and it is tried again then
            log.exception("delivery %s could not be attempted", delivery.pk)
    return len(claimed)


@dataclass(frozen=True)
class Message:
    """What one notification says: the webhook's JSON, and the e-mail's subject and its
    text and HTML parts (``<template>.txt``, ``<template>.html``, given ``context``)."""

    data: dict[str, Any]
    subject: str
    template: str
    context: dict[str, Any]


def _alerts_message(notification: Notification, now: datetime) -> Message | str:
    """The message of a rule's alerts, or why none is sent: those still to be told of."""
    alerts = list(notification.alerts.select_related("agent").order_by("pk"))
    if notification.kind != NotificationKind.RESOLVED:
        alerts = [a for a in alerts if a.state == AlertState.FIRING]
    silenced = silenced_agents(notification.tenant_id, now)
    handled = set(Alert.objects.filter(handled_q(now), pk__in=[a.pk for a in alerts]).values_list("pk", flat=True))
    told = [a for a in alerts if a.agent_id not in silenced and a.pk not in handled]
    if not told:
        return "every alert of it is acknowledged, snoozed, silenced or over"
    data = payload(notification, told, now)
    context = {"notification": notification, "data": data, "alerts": told, "rule": notification.rule}
    return Message(data, subject(notification, told), "alerts/email/notification", context)


def _approval_message(notification: Notification, now: datetime) -> Message | str:
    """The message of a new approval request, or why it is no longer sent."""
    request = notification.approval
    if request is None:  # the constraint notification_of_a_rule_or_an_approval keeps it
        return "no approval request"
    why_not = approval_notices.not_to_send(request, now)
    if why_not:
        return why_not
    data = approval_notices.payload(notification, request, now)
    context = {"data": data, "approval": data["approval"], "request": request}
    return Message(data, approval_notices.subject(request), "alerts/email/approval", context)


def _attempt(delivery_id: int, now: datetime) -> None:
    delivery = Delivery.objects.select_related(
        "target", "notification__rule", "notification__tenant", "notification__approval__agent",
        "notification__approval__tenant",
    ).get(pk=delivery_id)  # fmt: skip
    notification = delivery.notification
    if notification.kind == NotificationKind.APPROVAL:
        message = _approval_message(notification, now)
    else:
        message = _alerts_message(notification, now)
    if isinstance(message, str):
        delivery.state = DeliveryState.SKIPPED
        delivery.note = message
        delivery.save(update_fields=["state", "note"])
        return
    started = time.perf_counter()
    try:
        outcome = _send(delivery, message, now)
    except Exception as exc:
        outcome = Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
    took = (time.perf_counter() - started) * 1000
    DeliveryAttempt.objects.create(
        delivery=delivery, at=now, ok=outcome.ok, status_code=outcome.status_code, error=outcome.error, duration_ms=took
    )
    delivery.attempts += 1
    if outcome.ok:
        delivery.state, delivery.sent_at, delivery.note, delivery.next_attempt_at = DeliveryState.SENT, now, "", None
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.state, delivery.next_attempt_at = DeliveryState.FAILED, None
        delivery.note = f"gave up after {delivery.attempts} attempts: {outcome.error}"[:300]
    else:
        delivery.next_attempt_at = now + BACKOFF_FIRST * 2 ** (delivery.attempts - 1)
        delivery.note = outcome.error
    delivery.save(update_fields=["state", "attempts", "sent_at", "note", "next_attempt_at"])


def payload(notification: Notification, alerts: list[Alert], now: datetime) -> dict[str, Any]:
    rule, tenant = notification.rule, notification.tenant
    if rule is None:
        raise ValueError("an approval's notification has a payload of its own (alerts/approvals.py)")
    base = settings.L10.public_url
    return {
        "version": 1,
        "kind": notification.kind,
        "tenant": tenant.slug,
        "rule": {
            "id": rule.pk, "name": rule.name, "severity": rule.severity, "metric": rule.metric,
            "comparator": rule.comparator, "threshold": rule.threshold,
        },
        "alerts": [
            {
                "id": f"alert-{a.pk}", "state": a.state, "message": a.message, "value": a.value,
                "agent": None if a.agent is None else {"id": str(a.agent_id), "name": a.agent.name, "external_id": a.agent.external_id},
                "started_at": a.started_at.isoformat(), "fired_at": a.fired_at.isoformat() if a.fired_at else None,
                "url": f"{base}/t/{tenant.slug}/alerts/{a.pk}/",
                "acknowledge_url": f"{base}/t/{tenant.slug}/alerts/{a.pk}/ack/{ack_token(a)}/",
            }
            for a in alerts
        ],
        "sent_at": now.isoformat(),
    }  # fmt: skip


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def unreachable(url: str) -> str:
    """Why a webhook may not be called (its host resolves to a loopback, private, link-local
    or otherwise internal address, and ``L10_WEBHOOK_ALLOW_PRIVATE`` is off), or ""."""
    if settings.L10.webhook_allow_private:
        return ""
    parts = urlsplit(url)
    try:
        found = socket.getaddrinfo(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        return f"the host does not resolve: {exc}"[:300]
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global:
            return f"{parts.hostname} is {ip}, not a public address (L10_WEBHOOK_ALLOW_PRIVATE allows it)"[:300]
    return ""


def subject(notification: Notification, alerts: list[Alert]) -> str:
    rule = notification.rule
    if rule is None:
        raise ValueError("an approval's notification has a subject of its own (alerts/approvals.py)")
    word = {"firing": "FIRING", "resolved": "RESOLVED", "reminder": "STILL FIRING"}[notification.kind]
    agents = ", ".join(a.agent.name if a.agent else "—" for a in alerts[:3]) + (" …" if len(alerts) > 3 else "")
    return f"[{word}] {rule.get_severity_display()}: {rule.name} ({len(alerts)}: {agents})"[:200]


def _send(delivery: Delivery, message: Message, now: datetime) -> Outcome:
    target = delivery.target
    data = message.data
    if target.kind == TargetKind.WEBHOOK:
        refused = unreachable(target.url)
        if refused:
            return Outcome(False, error=refused)
        body = json.dumps(data, separators=(",", ":")).encode()
        stamp = str(int(now.timestamp()))
        headers = {
            "Content-Type": "application/json", "User-Agent": "L10-Console-Alerts/1", "X-L10-Timestamp": stamp,
            "X-L10-Signature": signature(target.secret, stamp, body), "X-L10-Delivery": str(delivery.pk),
        }  # fmt: skip
        response = httpx.post(target.url, content=body, headers=headers, timeout=TIMEOUT, follow_redirects=False)
        ok = 200 <= response.status_code < 300
        return Outcome(ok, response.status_code, "" if ok else f"HTTP {response.status_code}")
    mail = EmailMultiAlternatives(
        subject=message.subject, body=render_to_string(f"{message.template}.txt", message.context),
        from_email=settings.DEFAULT_FROM_EMAIL, to=target.addresses,
    )  # fmt: skip
    mail.attach_alternative(render_to_string(f"{message.template}.html", message.context), "text/html")
    mail.send(fail_silently=False)
    return Outcome(True)
