"""The approvals pages (docs/approvals.md, "The inbox"): the inbox (pending requests,
oldest first, and the history below), one request, and the tenant's rules (admins).
Every member reads them; operators decide (admins, where the request says so); each
decision is one call of ``services.decide``, and a refusal is shown where it was asked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals import selectors, services
from approvals.models import ApprovalRequest, ApprovalRule, State
from audit.services import request_actor
from core.errors import ErrorCode, InterfaceError
from core.http import ConsoleRequest
from core.inputs import InputProblem, parse_time
from realtime import hub
from tenancy.decorators import tenant_view
from tenancy.models import Membership, Role

PENDING_SHOWN = 100
HISTORY_PAGE = 25
DECISIONS = {"approved": "Approved", "rejected": "Rejected", "expired": "Expired"}
# Where a decision form sends its person back: the page it was on.
BACK = {"inbox", "detail", "agent"}


@dataclass(frozen=True)
class Refusal:
    """A decision the service refused, shown beside its form (or above the list when the
    request is no longer pending), with what the person had typed."""

    approval_id: UUID
    error: InterfaceError
    comment: str


def _live(tenant_id: int) -> dict[str, Any]:
    seq = hub.current_seq(tenant_id)
    return {"live_view": "approvals", "live_seq": "" if seq is None else seq}


def _request_of(membership: Membership, approval_id: UUID) -> ApprovalRequest:
    """The tenant's request, or 404 (another tenant's is as none)."""
    found = (
        ApprovalRequest.objects.filter(pk=approval_id, tenant_id=membership.tenant_id)
        .select_related("agent")
        .prefetch_related("votes")
        .first()
    )
    if found is None:
        raise Http404("No such approval request in this tenant.")
    return found


# --- the inbox ---------------------------------------------------------------------------


def _history_filter(params: Any) -> tuple[selectors.HistoryFilter, tuple[datetime, str] | None]:
    """The history's filters from the query string (an unknown decision is no filter),
    and where the page starts (``before``: the last row of the page before it)."""
    decision = str(params.get("decision", "")).strip()
    given = selectors.HistoryFilter(
        agent=str(params.get("agent", "")).strip()[:200],
        action=str(params.get("action", "")).strip()[:100],
        decision=decision if decision in DECISIONS else "",
        decided_by=str(params.get("decided_by", "")).strip()[:150],
    )
    cursor = None
    created, _, pk = str(params.get("before", "")).partition("_")
    try:
        at = parse_time(created)
        if at is not None and pk:
            cursor = (at, str(UUID(pk)))
    except (InputProblem, ValueError):
        cursor = None  # a cursor that does not parse: the newest page
    return given, cursor


def _history_page(
    tenant_id: int, given: selectors.HistoryFilter, cursor: tuple[datetime, str] | None
) -> dict[str, Any]:
    """A page of the history, newest first, from ``cursor`` on (keyset by creation time
    and id, the selector's order), and the query of the page after it."""
    found: QuerySet[ApprovalRequest] = selectors.history(tenant_id, given)
    if cursor is not None:
        at, pk = cursor
        found = found.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk))
    rows = list(found[: HISTORY_PAGE + 1])
    older = ""
    if len(rows) > HISTORY_PAGE:
        rows = rows[:HISTORY_PAGE]
        last = rows[-1]
        older = urlencode({**given.query(), "before": f"{last.created_at.isoformat()}_{last.pk}"})
    here = {"before": f"{cursor[0].isoformat()}_{cursor[1]}"} if cursor else {}
    return {
        "history": rows, "older_query": older, "history_filter": given, "paged": cursor is not None,
        "filtered": bool(given.query()), "newest_query": urlencode(given.query()),
        "history_query": urlencode({**given.query(), **here}),  # what the live part reads again
    }  # fmt: skip


def _pending(tenant_id: int) -> dict[str, Any]:
    pending = selectors.pending(tenant_id, limit=PENDING_SHOWN)
    total = len(pending) if len(pending) < PENDING_SHOWN else selectors.pending_count(tenant_id)
    return {"pending": pending, "pending_total": total, "now": timezone.now()}


def _inbox(
    request: ConsoleRequest, membership: Membership, params: Any, refusal: Refusal | None = None, status: int = 200
) -> HttpResponse:
    tenant = membership.tenant
    live = _live(tenant.pk)  # before the lists: anything later is caught on connect
    given, cursor = _history_filter(params)
    context = {**live, **_pending(tenant.pk), **_history_page(tenant.pk, given, cursor), "decisions": DECISIONS}
    if refusal is not None:
        context["refusal"] = refusal
        context["refusal_inline"] = any(r.pk == refusal.approval_id for r in context["pending"])
    return render(request, "approvals/inbox.html", context, status=status)


@require_GET
@tenant_view()
def inbox(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    target = request.htmx.target if request.htmx else None
    tenant_id = membership.tenant_id
    if target == "approval-pending":  # the live part, read again after any approval news
        return render(request, "approvals/_pending.html", _pending(tenant_id))
    if target == "approval-history":  # a filter, a page, or approval news
        given, cursor = _history_filter(request.GET)
        context = {**_history_page(tenant_id, given, cursor), "decisions": DECISIONS}
        return render(request, "approvals/_history.html", context)
    return _inbox(request, membership, request.GET)


# --- one request -------------------------------------------------------------------------


def _detail(
    request: ConsoleRequest, membership: Membership, found: ApprovalRequest, refusal: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:  # fmt: skip
    context: dict[str, Any] = {"r": found, "refusal": refusal, "now": timezone.now()}
    if request.htmx and request.htmx.target == "approval-request":
        return render(request, "approvals/_one.html", context)
    return render(request, "approvals/detail.html", {**context, **_live(membership.tenant_id)}, status=status)


@require_GET
@tenant_view()
def detail(request: ConsoleRequest, membership: Membership, approval_id: UUID) -> HttpResponse:
    return _detail(request, membership, _request_of(membership, approval_id))


# --- deciding ----------------------------------------------------------------------------


def _decided_message(done: ApprovalRequest, approve: bool) -> str:
    what = f"“{done.summary}” ({done.action}, {done.agent.external_id})"
    if done.state == State.PENDING:
        return f"Your approval of {what} is the first of two: it waits for a second person's."
    if approve:
        return f"Approved {what}: the agent is told at once."
    return f"Rejected {what}: the agent is told at once, with your comment."


@require_POST
@tenant_view()  # the service checks the role (the request's own), and audits a refusal
def decide(request: ConsoleRequest, membership: Membership, approval_id: UUID) -> HttpResponse:
    """Approve or reject (``decision``), with a comment (required to reject). Back to the
    page the form was on (``next``); a refusal is that page again, with the reason beside
    the form and the comment kept, answered with the refusal's status (409 when someone
    else decided first, or it expired)."""
    back = request.POST.get("next", "")
    back = back if back in BACK else "inbox"
    decision = request.POST.get("decision", "")
    comment = request.POST.get("comment", "")
    try:
        if decision not in ("approve", "reject"):
            raise InterfaceError(
                ErrorCode.APPROVAL_INVALID, "Choose Approve or Reject. Nothing was decided.",
                details={"field": "decision"},
            )  # fmt: skip
        done = services.decide(
            request_id=approval_id, tenant_id=membership.tenant_id, actor=request_actor(request),
            role=membership.role, approve=decision == "approve", comment=comment,
        )  # fmt: skip
    except InterfaceError as exc:
        if exc.code == ErrorCode.APPROVAL_NOT_FOUND:
            raise Http404(exc.message) from None
        if exc.code == ErrorCode.PERMISSION_DENIED:  # a viewer: recorded in the trail
            return render(request, "403.html", {"exception": exc.message}, status=403)
        return _refused(request, membership, Refusal(approval_id, exc, comment), back)
    messages.success(request, _decided_message(done, decision == "approve"))
    return _back(membership, done, back)


def _back(membership: Membership, found: ApprovalRequest, back: str) -> HttpResponse:
    slug = membership.tenant.slug
    if back == "agent":
        return redirect(f"{reverse('dashboard:agent', args=[slug, found.agent_id])}#agent-approvals")
    if back == "detail":
        return redirect("approvals:detail", slug, found.pk)
    return redirect("approvals:inbox", slug)


def _refused(request: ConsoleRequest, membership: Membership, refusal: Refusal, back: str) -> HttpResponse:
    error = refusal.error
    if back == "detail":
        found = _request_of(membership, refusal.approval_id)
        return _detail(request, membership, found, refusal, status=error.http_status)
    if back == "agent":  # the agent's page is not rendered here: its message says why
        found = _request_of(membership, refusal.approval_id)
        messages.error(request, f"Not decided: {error.message} ({error.code})")
        return _back(membership, found, back)
    return _inbox(request, membership, {}, refusal, status=error.http_status)


# --- rules -------------------------------------------------------------------------------


def _rules_page(request: ConsoleRequest, membership: Membership, *, status: int = 200, **context: Any) -> HttpResponse:
    rules = ApprovalRule.objects.filter(tenant_id=membership.tenant_id)
    return render(request, "approvals/rules.html", {"rules": rules, **context}, status=status)


@require_GET
@tenant_view(need=Role.ADMIN)
def rules(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    return _rules_page(request, membership)


@require_POST
@tenant_view(need=Role.ADMIN)
def rule_add(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    """Add a rule (admins): who must decide the requests it matches from now on."""
    typed = {
        "action": request.POST.get("action", "").strip(), "selector": request.POST.get("selector", "").strip(),
        "needs_admin": request.POST.get("needs_admin") == "on", "two_approvers": request.POST.get("two_approvers") == "on",
    }  # fmt: skip
    try:
        rule = services.rule_add(
            tenant_id=membership.tenant_id, actor=request_actor(request), action=str(typed["action"]) or "*",
            selector=str(typed["selector"]), needs_role=Role.ADMIN if typed["needs_admin"] else Role.OPERATOR,
            needs_approvers=2 if typed["two_approvers"] else 1,
        )  # fmt: skip
    except InterfaceError as exc:
        return _rules_page(
            request, membership, status=exc.http_status, typed=typed, error=exc,
            error_field=(exc.details or {}).get("field"),
        )  # fmt: skip
    messages.success(request, f"Rule added: {_rule_text(rule)}. It applies to requests asked from now on.")
    return redirect("approvals:rules", membership.tenant.slug)


@require_POST
@tenant_view(need=Role.ADMIN)
def rule_remove(request: ConsoleRequest, membership: Membership, approval_rule_id: int) -> HttpResponse:
    """Remove a rule (admins); the requests asked under it keep who may decide them."""
    rule = ApprovalRule.objects.filter(pk=approval_rule_id, tenant_id=membership.tenant_id).first()
    try:
        services.rule_remove(tenant_id=membership.tenant_id, actor=request_actor(request), rule_id=approval_rule_id)
    except InterfaceError as exc:
        if exc.code == ErrorCode.APPROVAL_RULE_NOT_FOUND:
            raise Http404(exc.message) from None
        messages.error(request, f"The rule was not removed: {exc.message} ({exc.code})")
        return redirect("approvals:rules", membership.tenant.slug)
    said = _rule_text(rule) if rule is not None else "the rule"
    messages.success(request, f"Rule removed: {said}. Pending requests keep who may decide them.")
    return redirect("approvals:rules", membership.tenant.slug)


def _rule_text(rule: ApprovalRule) -> str:
    what = "every action" if rule.action == "*" else f"“{rule.action}”"
    agents = f" of agents matching {rule.selector}" if rule.selector else ""
    who = "an admin" if rule.needs_role == Role.ADMIN else "an operator"
    two = ", two different approvers" if rule.needs_approvers > 1 else ""
    return f"{what}{agents} needs {who}{two}"
