"""Control from the pages: an agent's buttons (each a confirmation dialog posting here),
and bulk operations from the agent list (preview, start, progress, undo)."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from audit.services import request_actor
from control import bulk, dialogs
from control.models import Batch
from control.rules import MAX_QUOTA, Action, ControlRequest, ControlStatus
from control.services import control_execute
from core import money
from core.errors import ErrorCode, InterfaceError
from core.http import ConsoleRequest
from core.inputs import InputProblem
from fleet.models import QuotaType
from fleet.selectors import get_agent_for_user
from realtime import hub
from tenancy.decorators import tenant_view
from tenancy.models import Membership, Role


def _limit(value: str) -> Any:
    # A whole number, or the text as typed for the service to refuse with its own message.
    value = value.strip().replace(",", "").replace("_", "")
    return int(value) if re.fullmatch(r"\d{1,15}", value) else value


def _quota_limit(post: Any) -> tuple[Any, InterfaceError | None]:
    """The quota dialog's limit as control keeps it, and the refusal of one it cannot be.

    A cost limit is typed in dollars ("5.00", "$5", "1,250.50") and kept in whole cents,
    as the API takes it (docs/costs.md, "Cost quotas"); the refusal goes through the
    service, which checks the role first and audits it like its own."""
    text = post.get("new_limit", "")
    if post.get("quota_type") != QuotaType.COST_USD:
        return _limit(text), None
    try:
        cents = money.cents_from_dollars(text)
    except InputProblem as exc:
        return None, InterfaceError(ErrorCode.CONTROL_INVALID_QUOTA, f"The cost limit {exc}.")
    if cents > MAX_QUOTA:
        most = money.usd(money.from_cents(MAX_QUOTA))
        return None, InterfaceError(ErrorCode.CONTROL_INVALID_QUOTA, f"The cost limit is at most {most}.")
    return cents, None


@require_POST
@tenant_view()  # the control service checks each action's role itself, and audits a refusal
def agent_control(request: ConsoleRequest, membership: Membership, agent_id: UUID, action: str) -> HttpResponse:
    if action not in {a.value for a in Action}:
        raise Http404("No such control action.")
    agent = get_agent_for_user(request.user, agent_id, membership=membership)
    post = request.POST
    new_limit, refusal = _quota_limit(post) if action == Action.QUOTA else (None, None)
    control = ControlRequest(
        Action(action),
        str(agent.pk),
        reason=post.get("reason", "").strip(),
        # The form's own key: a second click, or a resubmitted form, replays the first answer.
        idempotency_key=post.get("idempotency_key") or None,
        quota_type=post.get("quota_type") if action == Action.QUOTA else None,
        period=post.get("period") or "day",
        new_limit=new_limit,
        pause_minutes=_limit(post["minutes"]) if action == Action.PAUSE and post.get("minutes") else None,
        mode=post.get("mode") or "after_task",
    )
    actor = request_actor(request)
    try:
        result = control_execute(tenant=membership.tenant, actor=actor, request=control, refusal=refusal)
    except InterfaceError as exc:
        if exc.code == ErrorCode.PERMISSION_DENIED:  # recorded in the trail; the role was too low
            return render(request, "403.html", {"exception": exc.message}, status=403)
        # The agent's page opens the same dialog again, with what was typed and why.
        dialogs.remember_refused(request, str(agent.pk), action, f"{exc.message} ({exc.code})", post)
    else:
        if result.status == ControlStatus.SUCCESS:
            messages.success(request, f"{result.message} Its confirmation shows below as the agent reports.")
        else:
            messages.info(request, result.message)
    return redirect("dashboard:agent", membership.tenant.slug, agent.pk)


# --- bulk ------------------------------------------------------------------------------


def _bulk_action(value: str | None) -> Action:
    if value not in {a.value for a in bulk.BULK_ACTIONS}:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_ACTION, "Choose to pause, resume or stop the selected agents.")
    return Action(value)


def _selection(request: ConsoleRequest, membership: Membership, data: Any) -> tuple[list[Any], str | None]:
    selector = (data.get("selector") or "").strip() or None
    agents = bulk.bulk_select(membership.tenant, agent_ids=data.getlist("agent"), selector=selector)
    return agents, selector


@require_GET
@tenant_view(need=Role.OPERATOR)
def bulk_preview(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    """The dry run: what a batch would do, and a form to confirm it."""
    try:
        action = _bulk_action(request.GET.get("action"))
        agents, selector = _selection(request, membership, request.GET)
    except InterfaceError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
        return redirect("dashboard:agents", membership.tenant.slug)
    preview = bulk.bulk_preview(action, agents)
    context = {"preview": preview, "action": action, "selector": selector, "agents": agents}
    return render(request, "control/bulk_preview.html", context)


@require_POST
@tenant_view(need=Role.OPERATOR)
def bulk_start(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    try:
        action = _bulk_action(request.POST.get("action"))
        agents, _ = _selection(request, membership, request.POST)
        batch = bulk.bulk_start(
            tenant=membership.tenant,
            actor=request_actor(request),
            action=action,
            agents=agents,
            reason=request.POST.get("reason", "").strip(),
        )
    except InterfaceError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
        return redirect("dashboard:agents", membership.tenant.slug)
    return redirect("control:batch", membership.tenant.slug, batch.pk)


HISTORY_PAGE = 50


@require_GET
@tenant_view()
def batches(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    """The tenant's batches, newest first, 50 a page; ``before`` (a start time) pages back."""
    before_text = request.GET.get("before", "")
    before = parse_datetime(before_text) if before_text else None
    if before_text and (before is None or before.tzinfo is None):
        error = InterfaceError(
            ErrorCode.CONTROL_INVALID_REQUEST, "“before” is a start time such as 2026-11-30T08:00:00+00:00."
        )
        messages.error(request, f"{error.message} ({error.code})")
        return redirect("control:batches", membership.tenant.slug)
    rows = bulk.batch_history(membership.tenant, limit=HISTORY_PAGE + 1, before=before)
    more, rows = len(rows) > HISTORY_PAGE, rows[:HISTORY_PAGE]
    context = {"rows": rows, "older": rows[-1].batch.created_at if more else None}
    return render(request, "control/batches.html", context)


@require_GET
@tenant_view()
def batch(request: ConsoleRequest, membership: Membership, batch_id: UUID) -> HttpResponse:
    found = get_object_or_404(
        Batch.objects.select_related("created_by", "undo_of"), pk=batch_id, tenant=membership.tenant
    )
    context = {
        "batch": found,
        "progress": bulk.bulk_progress(found),
        "items": found.items.select_related("agent"),
        "undone_by": Batch.objects.filter(undo_of=found).first(),
        "can_undo": found.action in ("pause", "resume") and membership.can_pause,
    }
    if request.htmx:
        return render(request, "control/_batch_progress.html", context)
    # The page follows the batch over its live socket: each step of progress the hub
    # carries makes it read the part again (dashboard/live.py), no polling.
    seq = hub.current_seq(membership.tenant.pk)
    live = {"live_view": "batch", "live_batch": found.pk, "live_seq": "" if seq is None else seq}
    return render(request, "control/batch.html", {**context, **live})


@require_POST
@tenant_view(need=Role.OPERATOR)
def batch_undo(request: ConsoleRequest, membership: Membership, batch_id: UUID) -> HttpResponse:
    found = get_object_or_404(Batch, pk=batch_id, tenant=membership.tenant)
    try:
        undo = bulk.bulk_undo(batch=found, actor=request_actor(request))
    except InterfaceError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
        return redirect("control:batch", membership.tenant.slug, found.pk)
    return redirect("control:batch", membership.tenant.slug, undo.pk)
