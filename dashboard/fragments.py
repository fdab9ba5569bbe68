"""Parts of pages rendered once and cached as HTML, shared by the tenant's members: they
depend on the tenant's data and the range only (no user, no CSRF token, no "ago"). The
pages (``dashboard.views``) and the live socket (``dashboard.live``) send the same ones."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.template.loader import render_to_string

from dashboard import charts, selectors
from dashboard.pagecache import Page
from fleet.models import ObservedState
from fleet.series import RANGES, MetricsUnavailable, Range
from tenancy.models import Membership


def render(template: str, context: dict[str, Any]) -> str:
    return render_to_string(template, context)


def overview_tiles(membership: Membership, page: Page | None = None) -> str:
    """The overview's tiles as HTML, cached for the tenant's members."""
    tenant = membership.tenant
    return (page or Page()).cached(
        "overview",
        tenant.pk,
        (),
        settings.L10.cache_ttl_dashboard,
        lambda: render(
            "dashboard/_overview_tiles.html",
            {"current": membership, "states": ObservedState.choices, "overview": selectors.overview(tenant.pk)},
        ),
    )


def overview_charts(membership: Membership, rng: Range, context: dict[str, Any], page: Page) -> str:
    """The overview's charts as HTML, cached for the tenant's members; when the metrics
    store fails, a panel that says so (never cached)."""
    tenant = membership.tenant
    try:
        return page.metrics(
            "fleet-charts",
            tenant.pk,
            (rng.key,),
            lambda: render(
                "dashboard/_overview_charts.html", {**context, "charts": charts.fleet_charts(tenant.pk, rng)}
            ),
        )
    except MetricsUnavailable as exc:
        return render("dashboard/_overview_charts.html", {**context, "charts": None, "charts_error": str(exc)})


def agent_charts(tenant_id: int, agent_id: UUID, rng: Range, page: Page) -> str:
    """An agent's charts panel as HTML, cached per agent and range (nothing in it depends
    on who reads it); when the metrics store fails, a panel that says so (never cached)."""
    context = {"range": rng, "ranges": RANGES.values()}
    try:
        return page.metrics(
            "agent-charts-html",
            tenant_id,
            (agent_id, rng.key),
            lambda: str(
                render("dashboard/_agent_charts.html", {**context, "charts": charts.agent_charts(agent_id, rng)})
            ),
        )
    except MetricsUnavailable as exc:
        return render("dashboard/_agent_charts.html", {**context, "charts": None, "charts_error": str(exc)})
