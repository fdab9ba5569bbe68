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
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from dashboard import selectors
from fleet.models import ObservedState
from fleet.selectors import get_agent_for_user
from l10console import hub, parts, tenant_cache
from l10console.http import ConsoleRequest
from l10console.tenancy.decorators import tenant_view
from l10console.tenancy.models import Membership

PAGE_SIZE = 50
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


class Page:
    """Collects whether any part of the page came from the database because the cache was
    down; reads the tenant's cache generation once for all of the page's entries."""

    def __init__(self) -> None:
        self.degraded = False
        self.generations: dict[int, int] = {}

    def prime(self, tenant_id: int) -> int | None:
        """Read the tenant's generation now. Call it before reading anything a cached entry
        is built from: a change written after this read bumps past it, so its entry is
        never stored under the new generation with the old data."""
        gen = self.generations.get(tenant_id)
        if gen is None:
            try:
                gen = self.generations[tenant_id] = tenant_cache.generation(tenant_id)
            except tenant_cache.CacheUnavailable:
                gen = None  # get_or_compute finds the cache down too and computes
        return gen

    def cached(self, kind: str, tenant_id: int, parts: tuple[object, ...], ttl: int, compute: Any) -> Any:
        gen = self.prime(tenant_id)
        result = tenant_cache.get_or_compute(kind, tenant_id, parts, ttl, compute, gen=gen)
        self.degraded |= result.degraded
        return result.value

    def charts(self, kind: str, tenant_id: int, parts: tuple[object, ...], compute: Any) -> tuple[Any, str | None]:
        """Charts, or (None, why) when the metrics store failed or ran past its budget."""
        try:
            return self.cached(kind, tenant_id, parts, settings.L10.cache_ttl_metrics, compute), None
        except selectors.MetricsUnavailable as exc:
            return None, str(exc)


def _fragment(template: str, context: dict[str, Any]) -> str:
    """A part of a page rendered once and cached as HTML, shared by the tenant's members: it
    depends on the tenant's data and the range only (no user, no CSRF token, no "ago")."""
    return render_to_string(template, context)


def _tiles_context(membership: Membership) -> dict[str, Any]:
    return {"current": membership, "states": ObservedState.choices}


def overview_tiles(membership: Membership, page: Page | None = None) -> str:
    """The overview's tiles as HTML, cached for the tenant's members (also for live pages)."""
    tenant = membership.tenant
    return str(
        (page or Page()).cached(
            "overview",
            tenant.pk,
            (),
            settings.L10.cache_ttl_dashboard,
            lambda: _fragment(
                "dashboard/_overview_tiles.html",
                {**_tiles_context(membership), "overview": selectors.overview(tenant.pk)},
            ),
        )
    )


def _live(tenant_id: int, view: str, agent_id: UUID | None = None) -> dict[str, Any]:
    """What the page's live socket needs: the view and the sequence number it was read at
    (read before the page's data, so anything later is caught on connect)."""
    seq = hub.current_seq(tenant_id)
    return {"live_view": view, "live_agent": agent_id, "live_seq": "" if seq is None else seq}


@require_GET
@tenant_view()
def overview(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    tenant = membership.tenant
    rng = selectors.parse_range(request.GET.get("range"))
    target = request.htmx.target if request.htmx else None
    live = _live(tenant.pk, "overview") if target is None else {}
    shared = {"current": membership, "range": rng, "ranges": selectors.RANGES.values(), "states": ObservedState.choices}

    def charts_part() -> tuple[str, bool]:
        part = Page()
        try:
            html = part.cached(
                "fleet-charts",
                tenant.pk,
                (rng.key,),
                settings.L10.cache_ttl_metrics,
                lambda: _fragment(
                    "dashboard/_overview_charts.html", {**shared, "charts": selectors.fleet_charts(tenant.pk, rng)}
                ),
            )
        except selectors.MetricsUnavailable as exc:  # shown, never cached
            html = _fragment("dashboard/_overview_charts.html", {**shared, "charts": None, "charts_error": str(exc)})
        return html, part.degraded

    # The charts are read beside the tiles (their queries are independent).
    charts_result = parts.beside(charts_part) if target != "overview-tiles" else None
    page = Page()
    tiles = ""
    if target != "overview-charts":
        tiles = overview_tiles(membership, page)
    charts = ""
    if charts_result is not None:
        charts, charts_degraded = charts_result()
        page.degraded |= charts_degraded
    if target == "overview-charts":
        return HttpResponse(charts)
    if target == "overview-tiles":
        return HttpResponse(tiles)
    # Both parts were rendered from the app's own autoescaping templates.
    context = {"tiles": mark_safe(tiles), "charts": mark_safe(charts), "degraded": page.degraded, **live}  # noqa: S308
    return render(request, "dashboard/overview.html", context)


def _agent_query(request: ConsoleRequest) -> tuple[selectors.AgentQuery, str | None]:
    error = None
    try:
        labels = selectors.parse_labels(request.GET.get("labels", "")[:500])
    except selectors.BadFilter as exc:
        labels, error = {}, str(exc)
    sort = request.GET.get("sort", "name")
    descending = sort.startswith("-")
    sort = sort.lstrip("-")
    query = selectors.AgentQuery(
        state=request.GET.get("state") or None,
        labels=tuple(sorted(labels.items())),
        name=(request.GET.get("q") or "").strip()[:200] or None,
        sort=sort if sort in selectors.SORTS else "name",
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

    def compute() -> Any:
        paginator = Paginator(selectors.agent_list(tenant.pk, query), PAGE_SIZE)
        listed = paginator.get_page(page_number)
        return {"count": paginator.count, "agents": list(listed.object_list), "number": listed.number}

    data = page.cached("agent-list", tenant.pk, (query, page_number), settings.L10.cache_ttl_agent_list, compute)
    paginator = Paginator(range(data["count"]), PAGE_SIZE)
    context = {
        "agents": data["agents"],
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
    return render(request, template, context)


@require_GET
@tenant_view()
def agent_detail(request: ConsoleRequest, membership: Membership, agent_id: UUID) -> HttpResponse:
    tenant = membership.tenant
    # Generation and sequence first, the agent's row after: the cached detail is built
    # from this row, and a change in between must make it a miss, not a stale hit.
    page = Page()
    page.prime(tenant.pk)
    live = {} if request.htmx else _live(tenant.pk, "agent", agent_id)
    agent = get_agent_for_user(request.user, agent_id, tenant=tenant)
    rng = selectors.parse_range(request.GET.get("range"))
    detail = page.cached(
        "agent-detail",
        tenant.pk,
        (agent.pk,),
        settings.L10.cache_ttl_agent_detail,
        lambda: selectors.agent_detail(agent),
    )
    charts, charts_error = page.charts(
        "agent-charts", tenant.pk, (agent.pk, rng.key), lambda: selectors.agent_charts(agent.pk, rng)
    )
    context = {
        "detail": detail,
        "agent": detail.agent,
        "dialogs": CONTROL_DIALOGS,
        # One key per page load and action: a double click or a resubmission replays.
        "idempotency_key": secrets.token_hex(12),
        "charts": charts,
        "charts_error": charts_error,
        "range": rng,
        "ranges": selectors.RANGES.values(),
        "degraded": page.degraded,
        **live,
    }
    if request.htmx and request.htmx.target == "agent-charts":
        return render(request, "dashboard/_agent_charts.html", context)
    if request.htmx and request.htmx.target == "agent-summary":
        return render(request, "dashboard/_agent_summary.html", context)
    return render(request, "dashboard/agent_detail.html", context)
