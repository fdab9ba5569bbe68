"""New approval requests told to the tenant's notification targets (docs/alerts.md,
"Approval requests"), through the alert manager's own delivery (alerts/notify.py).

- **Who:** every enabled target of the tenant with its ``approvals`` switch on (it is on
  for every target unless an admin turns it off on the targets page): approvals are not
  chosen rule by rule, since a request nobody hears of runs out and is decided by its
  timeout.
- **When:** ``approvals.signals.requested`` (sent after the request's commit; connected in
  alerts/apps.py) makes one ``Notification`` of kind ``approval`` with one ``Delivery``
  per target; a request is told once, however often the signal comes.
- **How:** as an alert's message: claimed, sent, tried again after a backoff, every attempt
  recorded; webhooks signed with the target's secret; e-mail with text and HTML parts.
- **Never too late:** at sending time, a request that is no longer pending (decided,
  expired) or past its time is not sent (``skipped``, with the reason).
- Silences and acknowledgements are the alerts' own: they do not hold an approval back.

The message says what the agent asks, who may decide and how long is left, and links the
request's page (behind sign-in). The request's ``details`` are left out: they may hold
what only the tenant's members may read, and the page shows them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from alerts.models import Delivery, Notification, NotificationKind, NotificationTarget
from approvals.models import ApprovalRequest, OnTimeout, State
from core import runner
from tenancy.models import Role

log = logging.getLogger(__name__)


def approval_notify(*, request: ApprovalRequest, now: datetime | None = None) -> Notification | None:
    """One message of ``request`` to each of the tenant's targets that take approvals;
    None when none does or it was told already. Sent once the caller's transaction commits."""
    if request.state != State.PENDING:
        return None
    targets = list(NotificationTarget.objects.filter(tenant_id=request.tenant_id, enabled=True, approvals=True))
    if not targets:
        return None
    now = now or timezone.now()
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                tenant_id=request.tenant_id, approval=request, kind=NotificationKind.APPROVAL, created_at=now
            )
            Delivery.objects.bulk_create(
                [Delivery(notification=notification, target=t, next_attempt_at=now) for t in targets]
            )
    except IntegrityError:  # told already (notification_one_per_approval)
        return None
    runner.enqueue("alerts.tasks.deliver")
    return notification


def on_requested(sender: Any, request: ApprovalRequest, **kwargs: Any) -> None:
    """The receiver of ``approvals.signals.requested``. It runs after the agent's request
    committed, in the agent's call: a failure here is logged, never answered to the agent."""
    try:
        approval_notify(request=request)
    except Exception:
        log.exception("approval request %s could not be told to the notification targets", request.pk)


# --- the message ------------------------------------------------------------------------------


def not_to_send(request: ApprovalRequest, now: datetime) -> str:
    """Why the message of ``request`` is no longer worth sending, or ""."""
    if request.state != State.PENDING:
        by = f" by {request.decided_by_label}" if request.decided_by_label else ""
        return f"the request was {request.state}{by} before it could be sent"[:300]
    if now >= request.expires_at:
        return "the request ran out before it could be sent"
    return ""


def link(request: ApprovalRequest) -> str:
    """The request's page (it asks to sign in), under ``L10_PUBLIC_URL``."""
    slug = request.tenant.slug
    try:
        path = reverse("approvals:detail", args=[slug, request.pk])
    except NoReverseMatch:  # the pages' URLconf not mounted: the path they serve
        path = f"/t/{slug}/approvals/{request.pk}/"
    return f"{settings.L10.public_url}{path}"


def who_may_decide(request: ApprovalRequest) -> str:
    """ "An operator or admin of acme", "Two different admins of acme", …"""
    admins = request.needs_role == Role.ADMIN
    if request.needs_approvers > 1:
        who = "Two different admins" if admins else "Two different people (operators or admins)"
        return f"{who} of {request.tenant.slug} must approve; one rejection decides"
    return f"{'An admin' if admins else 'An operator or admin'} of {request.tenant.slug} may decide"


def time_left(request: ApprovalRequest, now: datetime) -> str:
    """ "29 min left (until 2026-11-30 12:29 UTC); then it is rejected"."""
    seconds = max(0, int((request.expires_at - now).total_seconds()))
    if seconds >= 2 * 86400:
        span = f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    elif seconds >= 3600:
        span = f"{seconds // 3600} h {seconds % 3600 // 60} min"
    elif seconds >= 60:
        span = f"{seconds // 60} min"
    else:
        span = f"{seconds} s"
    then = "approved" if request.on_timeout == OnTimeout.APPROVE else "rejected"
    return f"{span} left (until {request.expires_at:%Y-%m-%d %H:%M} UTC); then it is {then}"


def subject(request: ApprovalRequest) -> str:
    agent = request.agent
    return f"Approval needed: {request.action} by {agent.name or agent.external_id}"[:200]


def payload(notification: Notification, request: ApprovalRequest, now: datetime) -> dict[str, Any]:
    """The webhook's JSON (``"kind": "approval"``; an alert's message has ``rule`` and
    ``alerts`` in its place)."""
    agent = request.agent
    return {
        "version": 1,
        "kind": NotificationKind.APPROVAL.value,
        "tenant": request.tenant.slug,
        "approval": {
            "id": str(request.pk), "action": request.action, "summary": request.summary,
            "agent": {"id": str(agent.pk), "name": agent.name, "external_id": agent.external_id},
            "needs_role": request.needs_role, "needs_approvers": request.needs_approvers,
            "who_may_decide": who_may_decide(request), "on_timeout": request.on_timeout,
            "created_at": request.created_at.isoformat(), "expires_at": request.expires_at.isoformat(),
            "time_left": time_left(request, now), "url": link(request),
        },
        "sent_at": now.isoformat(),
    }  # fmt: skip
