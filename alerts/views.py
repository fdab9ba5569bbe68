"""The on-call pages of a tenant: its alerts (filterable), one alert's timeline, and the
acknowledge and snooze actions (operators and admins). Every answer says what happened;
a refusal says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from alerts import selectors, services
from alerts.models import Alert, AlertRule, Severity, Silence
from alerts.notify import read_ack_token
from alerts.rules import silence_spec
from audit.services import request_actor
from control.rules import Action, ControlRequest, ControlStatus
from control.services import control_execute
from core.errors import ErrorCode, InterfaceError
from core.http import ConsoleRequest
from fleet.labels import BadSelector, parse_selector
from realtime import hub
from tenancy.decorators import tenant_view
from tenancy.models import Membership, Role

PAGE_SIZE = 50
SNOOZES = {"1h": ("1 hour", timedelta(hours=1)), "4h": ("4 hours", timedelta(hours=4))}


def _live(tenant_id: int) -> dict[str, object]:
    seq = hub.current_seq(tenant_id)
    return {"live_view": "alerts", "live_seq": "" if seq is None else seq}


@require_GET
@tenant_view()
def alert_list(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    tenant = membership.tenant
    rule_ref = request.GET.get("rule", "")
    labels_text = request.GET.get("labels", "").strip()[:2000]
    try:
        labels = parse_selector(labels_text)
        labels_error = None
    except BadSelector as exc:
        labels, labels_error = (), f"{exc} ({ErrorCode.ALERT_BAD_SCOPE})"
    query = selectors.AlertFilter(
        labels=labels,
        status=request.GET.get("status", "open") if request.GET.get("status") in selectors.STATUSES else "open",
        severity=request.GET.get("severity", "") if request.GET.get("severity") in Severity.values else "",
        rule_id=int(rule_ref) if rule_ref.isdigit() else None,
        agent=request.GET.get("agent", "").strip()[:200],
    )
    # No guess at what labels that do not parse meant: nothing matches them.
    found = Alert.objects.none() if labels_error else selectors.alert_list(tenant.pk, query)
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page") or "1")
    context = {
        "page": page,
        "query": query,
        "statuses": selectors.STATUSES,
        "severities": Severity.choices,
        "rules": AlertRule.objects.filter(tenant=tenant).order_by("name"),
        "snoozes": SNOOZES,
        "now": timezone.now(),
        "silenced": selectors.silenced_agents(tenant.pk, timezone.now()),
        "labels_text": labels_text,
        "labels_error": labels_error,
        **({} if request.htmx else _live(tenant.pk)),
    }
    template = "alerts/_alert_rows.html" if request.htmx else "alerts/alerts.html"
    return render(request, template, context, status=400 if labels_error else 200)


@require_GET
@tenant_view()
def alert_detail(request: ConsoleRequest, membership: Membership, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(
        Alert.objects.select_related("rule", "agent", "acknowledged_by", "snoozed_by"),
        pk=alert_id, tenant=membership.tenant,
    )  # fmt: skip
    context = {
        "alert": alert, "timeline": selectors.timeline(alert), "snoozes": SNOOZES, "now": timezone.now(),
        "chart": selectors.alert_chart(alert), "deliveries": selectors.deliveries(alert),
    }  # fmt: skip
    return render(request, "alerts/alert.html", context)


def _back(request: ConsoleRequest, membership: Membership, alert_id: int) -> HttpResponse:
    nxt = request.POST.get("next", "")
    if nxt == "list":
        return redirect("alerts:list", membership.tenant.slug)
    return redirect("alerts:detail", membership.tenant.slug, alert_id)


def _refused(request: ConsoleRequest, exc: InterfaceError) -> None:
    messages.error(request, f"{exc.message} ({exc.code})")


def _until(text: str) -> datetime | None:
    value = parse_datetime(text.strip()) if text.strip() else None
    if text.strip() and value is None:
        raise InterfaceError(ErrorCode.ALERT_BAD_SNOOZE, "Give the time as YYYY-MM-DD HH:MM (UTC).")
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


@require_GET
@tenant_view(need=Role.OPERATOR)
def alert_ack_link(request: ConsoleRequest, membership: Membership, alert_id: int, token: str) -> HttpResponse:
    """Where a message's "acknowledge" link leads: signed in, the alert and a button. The
    link alone changes nothing (a mail scanner that follows it acknowledges nothing)."""
    alert = get_object_or_404(Alert.objects.select_related("rule", "agent"), pk=alert_id, tenant=membership.tenant)
    named = read_ack_token(token)
    if named is None or named.get("alert") != alert.pk or named.get("tenant") != membership.tenant.pk:
        error = InterfaceError(ErrorCode.ALERT_LINK_INVALID)
        return render(
            request, "alerts/ack_link.html", {"alert": alert, "error": f"{error.message} ({error.code})"}, status=400
        )
    return render(request, "alerts/ack_link.html", {"alert": alert})


@require_POST
@tenant_view(need=Role.OPERATOR)
def alert_acknowledge(request: ConsoleRequest, membership: Membership, alert_id: int) -> HttpResponse:
    try:
        until = _until(request.POST.get("until", ""))
        alert = services.alert_acknowledge(
            alert_id=alert_id, tenant_id=membership.tenant.pk, actor=request_actor(request),
            comment=request.POST.get("comment", "").strip(), until=until,
        )  # fmt: skip
    except InterfaceError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Acknowledged: {alert.message}. Its notifications stop.")
    return _back(request, membership, alert_id)


@require_POST
@tenant_view(need=Role.OPERATOR)
def alert_unacknowledge(request: ConsoleRequest, membership: Membership, alert_id: int) -> HttpResponse:
    try:
        alert = services.alert_unacknowledge(
            alert_id=alert_id, tenant_id=membership.tenant.pk, actor=request_actor(request)
        )
    except InterfaceError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"No longer acknowledged: {alert.message}.")
    return _back(request, membership, alert_id)


@require_POST
@tenant_view(need=Role.OPERATOR)
def alert_pause_agent(request: ConsoleRequest, membership: Membership, alert_id: int) -> HttpResponse:
    """Pause the alert's agent through the control service; the pause's reason names the
    alert, so the agent page and the audit trail say why."""
    alert = get_object_or_404(Alert, pk=alert_id, tenant=membership.tenant)
    if alert.agent_id is None:
        messages.error(request, "This alert names no agent.")
        return _back(request, membership, alert_id)
    reason = f"alert-{alert.pk}: {alert.message}"[:500]
    try:
        result = control_execute(
            tenant=membership.tenant, actor=request_actor(request),
            request=ControlRequest(action=Action.PAUSE, agent=str(alert.agent_id), reason=reason),
        )  # fmt: skip
    except InterfaceError as exc:
        _refused(request, exc)
    else:
        said = "is already paused" if result.status == ControlStatus.NOOP else "is pausing; it confirms within seconds"
        messages.success(request, f"The agent {said} (reason: {reason}).")
    return _back(request, membership, alert_id)


@require_POST
@tenant_view(need=Role.OPERATOR)
def alert_snooze(request: ConsoleRequest, membership: Membership, alert_id: int) -> HttpResponse:
    choice = request.POST.get("for", "")
    try:
        until = _until(request.POST.get("until", "")) if choice == "until" else None
        duration = SNOOZES[choice][1] if choice in SNOOZES else None
        if duration is None and until is None:
            raise InterfaceError(ErrorCode.ALERT_BAD_SNOOZE)
        alert = services.alert_snooze(
            alert_id=alert_id, tenant_id=membership.tenant.pk, actor=request_actor(request), duration=duration,
            until=until,
        )  # fmt: skip
    except InterfaceError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Snoozed until {alert.snoozed_until:%Y-%m-%d %H:%M} UTC: {alert.message}.")
    return _back(request, membership, alert_id)


def _silences_page(
    request: ConsoleRequest, membership: Membership, status: int = 200, **context: object
) -> HttpResponse:
    now = timezone.now()
    silences = Silence.objects.filter(tenant=membership.tenant).select_related("created_by")
    ahead = [s for s in silences if s.ends_at > now]
    past = [s for s in silences if s.ends_at <= now][:20]
    return render(request, "alerts/silences.html", {"ahead": ahead, "past": past, "now": now, **context}, status=status)


@require_GET
@tenant_view()
def silence_list(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    return _silences_page(request, membership)


@require_POST
@tenant_view(need=Role.OPERATOR)
def silence_add(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    values = {k: request.POST.get(k, "") for k in ("matcher", "starts_at", "ends_at", "hours", "comment")}
    try:
        spec = silence_spec({k: v for k, v in values.items() if v != ""}, timezone.now())
        silence = services.silence_create(tenant=membership.tenant, spec=spec, actor=request_actor(request))
    except InterfaceError as exc:
        return _silences_page(
            request, membership, status=exc.http_status, values=values, error=f"{exc.message} ({exc.code})",
            error_field=getattr(exc, "field", None),
        )  # fmt: skip
    messages.success(request, f"Silenced {silence.matcher} until {silence.ends_at:%Y-%m-%d %H:%M} UTC.")
    return redirect("alerts:silences", membership.tenant.slug)


@require_POST
@tenant_view(need=Role.OPERATOR)
def silence_expire(request: ConsoleRequest, membership: Membership, silence_id: int) -> HttpResponse:
    try:
        services.silence_expire(tenant=membership.tenant, silence_id=silence_id, actor=request_actor(request))
    except InterfaceError as exc:
        _refused(request, exc)
    else:
        messages.success(request, "The silence is over; its alerts are sent again.")
    return redirect("alerts:silences", membership.tenant.slug)
