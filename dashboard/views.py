"""The dashboard pages: overview, agent list, agent detail. Server-rendered; HTMX swaps
the partial named after the element it replaces, and every link works without it."""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from approvals import selectors as approval_selectors
from audit import selectors as audit_selectors
from control import dialogs
from core import jinja, parts
from core.display import fresh_ago, with_params
from core.errors import ErrorCode
from core.http import ConsoleRequest
from costs import budgets
from costs import selectors as cost_selectors
from dashboard import fragments, selectors
from dashboard.pagecache import Page
from fleet import series
from fleet.labels import BadSelector, parse_selector
from fleet.models import Agent, ObservedState
from fleet.selectors import SORTS, AgentQuery, agent_list, get_agent_for_user
from realtime import hub
from tenancy.decorators import tenant_view
from tenancy.models import Membership

PAGE_SIZE = 50
# The agent page's cards read on their own, always fresh: another event filter, or the live
# socket saying the agent has news for them (dashboard/live.py). By id.
LIVE_CARDS = {"agent-events": "dashboard/_agent_event_list.html", "agent-controls": "dashboard/_agent_controls.html"}
# The agent page's control dialogs: (action, title, what it does, reason required).
CONTROL_DIALOGS = [
    ("pause", "Pause", "The agent finishes or holds its current step and starts no new task until resumed.", False),
    ("resume", "Resume", "The agent starts taking tasks again.", False),
    (
        "stop",
        "Emergency stop",
        "The agent is told at once to stop and refuses new work. Only a restart brings it back.",
        True,
    ),
    ("restart", "Restart", "The stopped agent may run again.", False),
    ("quota", "Set a quota", "The agent gets the new limit at once; past it, its tasks are refused.", False),
]


def _live(tenant_id: int, view: str, agent_id: UUID | None = None) -> dict[str, Any]:
    """What the page's live socket needs: the view and the sequence number it was read at
    (read before the page's data, so anything later is caught on connect)."""
    seq = hub.current_seq(tenant_id)
    return {"live_view": view, "live_agent": agent_id, "live_seq": "" if seq is None else seq}


@require_GET
@tenant_view()
def overview(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    tenant = membership.tenant
    rng = series.parse_range(request.GET.get("range"))
    target = request.htmx.target if request.htmx else None
    if target == "overview-costs":  # read after the page, once a minute: never on its way
        return render(request, "dashboard/_overview_costs.html", _cost_tiles(membership))
    live = _live(tenant.pk, "overview") if target is None else {}
    shared = {"current": membership, "range": rng, "ranges": series.RANGES.values(), "states": ObservedState.choices}

    def charts_part() -> tuple[str, bool]:
        part = Page()
        return fragments.overview_charts(membership, rng, shared, part), part.degraded

    page = Page()
    # Cached charts are read here; on a miss they are drawn beside the tiles (their queries
    # are independent).
    cached = fragments.cached_overview_charts(tenant.pk, rng, page) if target != "overview-tiles" else ""
    charts_result = parts.beside(charts_part) if cached is None else None
    tiles = ""
    if target != "overview-charts":
        tiles = fragments.overview_tiles(membership, page)
    charts_html = cached or ""
    if charts_result is not None:
        charts_html, charts_degraded = charts_result()
        page.degraded |= charts_degraded
    if target == "overview-charts":
        return HttpResponse(charts_html)
    if target == "overview-tiles":
        return HttpResponse(tiles)
    # Both parts were rendered from the app's own autoescaping templates.
    context = {"tiles": mark_safe(tiles), "charts": mark_safe(charts_html), "degraded": page.degraded, **live}  # noqa: S308
    return render(request, "dashboard/overview.html", context)


def _cost_tiles(membership: Membership) -> dict[str, Any]:
    """The overview's cost tiles: today, month to date, the month-end projection (costs)."""
    now = timezone.now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = cost_selectors.breakdown(membership.tenant.pk, budgets.month_start(now), now)
    _, projected = cost_selectors.projection(membership.tenant.pk, now, so_far=month.total_cost_usd)
    return {
        "current": membership, "loaded": True, "month": month.total_cost_usd, "projected": projected,
        "today": cost_selectors.breakdown(membership.tenant.pk, day, now).total_cost_usd,
        "unpriced": month.unpriced_records,
    }  # fmt: skip


def _agent_query(request: ConsoleRequest) -> tuple[AgentQuery, str | None]:
    error = None
    try:
        labels = parse_selector(request.GET.get("labels", ""))
    except BadSelector as exc:
        labels, error = (), f"{exc} ({ErrorCode.DASHBOARD_INVALID_QUERY})"
    sort = request.GET.get("sort", "name")
    descending = sort.startswith("-")
    sort = sort.lstrip("-")
    query = AgentQuery(
        state=request.GET.get("state") or None,
        labels=labels,
        name=(request.GET.get("q") or "").strip()[:200] or None,
        sort=sort if sort in SORTS else "name",
        descending=descending,
        pending_only=request.GET.get("pending") == "1",
    )
    return query, error


@require_GET
@tenant_view()
def agents(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    tenant = membership.tenant
    live = {} if request.htmx else _live(tenant.pk, "agents")
    query, filter_error = _agent_query(request)
    page_number = request.GET.get("page") or "1"
    page = Page()

    def compute() -> dict[str, Any]:
        paginator = Paginator(agent_list(tenant.pk, query), PAGE_SIZE)
        listed = paginator.get_page(page_number)
        # The rows are cached rendered (the same for every member); their "ago"s are told
        # again from now on each request (core.display.fresh_ago).
        agents_url = reverse("dashboard:agents", args=[tenant.slug])
        rows = jinja.render("dashboard/_agent_rows_body.html", {"agents": listed.object_list, "agents_url": agents_url})
        return {"count": paginator.count, "rows": str(rows) if listed.object_list else "", "number": listed.number}

    if filter_error:  # no guess at what a filter that does not parse meant: nothing matches
        data: dict[str, Any] = {"count": 0, "rows": "", "number": 1}
    else:
        data = page.cached(
            "agent-list-rows", tenant.pk, (query, page_number), settings.L10.cache_ttl_agent_list, compute
        )
    paginator = Paginator(range(data["count"]), PAGE_SIZE)
    context = {
        "rows": fresh_ago(data["rows"]) if data["rows"] else "",
        "page": paginator.get_page(data["number"]),
        "count": data["count"],
        "query": query,
        "sort_param": request.GET.get("sort", "name"),
        "labels_text": request.GET.get("labels", ""),
        "filter_error": filter_error,
        "states": ObservedState.choices,
        "degraded": page.degraded,
        "filtered": bool(query.state or query.labels or query.name or query.pending_only),
        **live,
    }
    template = "dashboard/_agent_rows.html" if request.htmx else "dashboard/agents.html"
    return render(request, template, context, status=400 if filter_error else 200)


def _events_context(request: ConsoleRequest, detail: selectors.AgentDetail, events: str) -> dict[str, Any]:
    filters = [
        (key, label, with_params(request.GET, events=key)) for key, (label, _) in selectors.EVENT_FILTERS.items()
    ]
    return {
        "agent": detail.agent, "detail": detail, "event_filter": events, "event_filters": filters,
        "events_url": with_params(request.GET, events=events),
        # The events page, filtered to this agent: all its history, live.
        "all_events_url": reverse("events:list", args=[request.resolver_match.kwargs["slug"] if request.resolver_match else ""]) + f"?agent_id={detail.agent.pk}",
    }  # fmt: skip


def _agent_costs(agent: Agent) -> dict[str, Any]:
    """The agent's costs this month, and the budgets that cover it with their countdowns."""
    now = timezone.now()
    return {
        "agent_costs": cost_selectors.agent_costs(agent, budgets.month_start(now), now),
        "agent_budgets": [budgets.status(b, now) for b in budgets.covering(agent)],
    }


def _agent_approvals(agent: Agent) -> dict[str, Any]:
    """The agent's requests waiting for a decision, oldest first (its approvals card)."""
    return {"agent_approvals": approval_selectors.pending(agent.tenant_id, agent_id=agent.pk), "now": timezone.now()}


@require_GET
@tenant_view()
def agent_detail(request: ConsoleRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    tenant = membership.tenant
    # Generation and sequence first, the agent's row after: the cached detail is built
    # from this row, and a change in between must make it a miss, not a stale hit.
    page = Page()
    page.prime(tenant.pk)
    live = {} if request.htmx else _live(tenant.pk, "agent", agent_id)
    agent = get_agent_for_user(request.user, agent_id, membership=membership)
    rng = series.parse_range(request.GET.get("range"))
    events = request.GET.get("events", "")
    events = events if events in selectors.EVENT_FILTERS else selectors.DEFAULT_EVENT_FILTER
    target = request.htmx.target if request.htmx else None
    if target == "agent-costs":  # the live card, read again after the agent spent
        costs = _agent_costs(agent)
        return render(request, "dashboard/_agent_costs.html", {"agent": agent, "current": membership, **costs})
    if target == "agent-approvals":  # the live card, read again after the agent asked or was answered
        pending = _agent_approvals(agent)
        return render(request, "dashboard/_agent_approvals.html", {"agent": agent, "current": membership, **pending})
    if target in LIVE_CARDS:
        detail = selectors.agent_detail(agent, events=events)
        return HttpResponse(jinja.render(LIVE_CARDS[target], _events_context(request, detail, events)))
    detail = page.cached(
        "agent-detail",
        tenant.pk,
        (agent.pk, events),
        settings.L10.cache_ttl_agent_detail,
        lambda: selectors.agent_detail(agent, events=events),
    )
    charts_html = fragments.agent_charts(tenant.pk, agent.pk, rng, page)
    reopen = None if request.htmx else dialogs.take_refused(request, str(agent.pk))
    context = {
        "detail": detail,
        "agent": detail.agent,
        "dialogs": CONTROL_DIALOGS,
        "reopen": reopen,
        **_events_context(request, detail, events),
        # One key per page load and action: a double click or a resubmission replays.
        "idempotency_key": secrets.token_hex(12),
        # Rendered from the app's own autoescaping template.
        "charts": mark_safe(charts_html),  # noqa: S308
        "degraded": page.degraded,
        **live,
    }
    if not request.htmx:
        context.update(_agent_costs(agent))
        context.update(_agent_approvals(agent))
    if membership.can_manage and not request.htmx:  # the agent's audit tab: admins see the trail
        about = audit_selectors.AuditFilter(resource_type="agent", resource_id=f"{agent.pk},{agent.external_id}")
        context["audit_filter"] = about
        context["audit_entries"] = list(audit_selectors.entries(tenant.pk, about).order_by("-occurred_at", "-pk")[:10])
    if request.htmx and request.htmx.target == "agent-charts":
        return HttpResponse(charts_html)
    if request.htmx and request.htmx.target == "agent-summary":
        summary = {"agent": detail.agent, "detail": detail, "current": membership}
        return HttpResponse(jinja.render("dashboard/_agent_summary.html", summary))
    return render(request, "dashboard/agent_detail.html", context)
