"""The control buttons of an agent's page: each a confirmation dialog posting here."""

from __future__ import annotations

import re
import secrets
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from audit.services import Actor
from control.services import Action, ControlRequest, ControlStatus, control_execute
from fleet.selectors import get_agent_for_user
from l10console.errors import InterfaceError
from l10console.http import ConsoleRequest
from l10console.tenancy.decorators import tenant_view
from l10console.tenancy.models import Membership, Role


def _limit(value: str) -> Any:
    # A whole number, or the text as typed for the service to refuse with its own message.
    value = value.strip().replace(",", "").replace("_", "")
    return int(value) if re.fullmatch(r"\d{1,15}", value) else value


@require_POST
@tenant_view(need=Role.OPERATOR)
def agent_control(request: ConsoleRequest, membership: Membership, agent_id: UUID, action: str) -> HttpResponse:
    if action not in {a.value for a in Action}:
        raise Http404("No such control action.")
    agent = get_agent_for_user(request.user, agent_id, tenant=membership.tenant)
    post = request.POST
    control = ControlRequest(
        Action(action),
        str(agent.pk),
        reason=post.get("reason", "").strip(),
        # The form's own key: a second click, or a resubmitted form, replays the first answer.
        idempotency_key=post.get("idempotency_key") or None,
        quota_type=post.get("quota_type") if action == Action.QUOTA else None,
        period=post.get("period") or "day",
        new_limit=_limit(post.get("new_limit", "")) if action == Action.QUOTA else None,
        pause_minutes=_limit(post["minutes"]) if action == Action.PAUSE and post.get("minutes") else None,
        mode=post.get("mode") or "after_task",
    )
    actor = Actor(
        user=request.user,
        ip=request.META.get("REMOTE_ADDR"),
        user_agent=request.headers.get("User-Agent", ""),
        request_id=secrets.token_hex(8),
    )
    try:
        result = control_execute(tenant=membership.tenant, actor=actor, request=control)
    except InterfaceError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    else:
        if result.status == ControlStatus.SUCCESS:
            messages.success(request, f"{result.message} Its confirmation shows below as the agent reports.")
        else:
            messages.info(request, result.message)
    return redirect("dashboard:agent", membership.tenant.slug, agent.pk)
