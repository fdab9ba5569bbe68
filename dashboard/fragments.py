"""Parts of pages rendered once and cached as HTML, shared by the tenant's members: they
depend on the tenant's data and the range only (no user, no CSRF token, no "ago"). The
pages (``dashboard.views``) and the live socket (``dashboard.live``) send the same ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.conf import settings
from django.template.loader import render_to_string

from core import tenant_cache
from dashboard import charts, selectors
from dashboard.pagecache import Page
from fleet.models import ObservedState
from fleet.series import RANGES, MetricsUnavailable, Range
from tenancy.models import Membership

FLEET_CHARTS = "fleet-charts"


def render(template: str, context: dict[str, Any]) -> str:
    return render_to_string(template, context)


OVERVIEW_TILES = "overview"


def _render_tiles(membership: Membership) -> str:
    return render(
        "dashboard/_overview_tiles.html",
        {"current": membership, "states": ObservedState.choices, "overview": selectors.overview(membership.tenant.pk)},
    )


def overview_tiles(membership: Membership, page: Page | None = None) -> str:
    """The overview's tiles as HTML, cached for the tenant's members."""
    return (page or Page()).cached(
        OVERVIEW_TILES, membership.tenant.pk, (), settings.L10.cache_ttl_dashboard, lambda: _render_tiles(membership)
    )


def fresh_overview_tiles(membership: Membership) -> str:
    """The overview's tiles read now, for the live overview, and put in the cache in place
    of older ones: a page loaded next shows them (they are as old as the last live update)."""
    tenant_id = membership.tenant.pk
    try:
        gen: int | None = tenant_cache.generation(tenant_id)  # read before the data, as Page.prime
    except tenant_cache.CacheUnavailable:
        gen = None
    html = _render_tiles(membership)
    if gen is not None:
        tenant_cache.store(OVERVIEW_TILES, tenant_id, (), settings.L10.cache_ttl_dashboard, html, gen=gen)
    return html


def _charts_panel(
    template: str, kind: str, tenant_id: int, parts: tuple[object, ...], context: dict[str, Any], page: Page,
    compute: Callable[[], Any],
) -> str:  # fmt: skip
    """A charts panel as HTML, cached under the charts' own generation; when the metrics
    store fails, a panel that says so (never cached)."""

    def draw() -> str:
        drawn = compute()
        return str(render(template, {**context, "charts": drawn, "drawn_to": charts.drawn_to(drawn)}))

    try:
        return page.metrics(kind, tenant_id, parts, draw)
    except MetricsUnavailable as exc:
        return render(template, {**context, "charts": None, "charts_error": str(exc)})


def cached_overview_charts(tenant_id: int, rng: Range, page: Page) -> str | None:
    """The overview's charts if they are cached (read inline: no part thread for a hit)."""
    found = page.peek_metrics(FLEET_CHARTS, tenant_id, (rng.key,))
    return found if isinstance(found, str) else None


def overview_charts(membership: Membership, rng: Range, context: dict[str, Any], page: Page) -> str:
    """The overview's charts, cached for the tenant's members."""
    tenant_id = membership.tenant.pk
    return _charts_panel(
        "dashboard/_overview_charts.html", FLEET_CHARTS, tenant_id, (rng.key,), context, page,
        lambda: charts.fleet_charts(tenant_id, rng),
    )  # fmt: skip


def agent_charts(tenant_id: int, agent_id: UUID, rng: Range, page: Page) -> str:
    """An agent's charts, cached per agent and range (nothing in them depends on who reads them)."""
    context = {"range": rng, "ranges": RANGES.values()}
    return _charts_panel(
        "dashboard/_agent_charts.html", "agent-charts-html", tenant_id, (agent_id, rng.key), context, page,
        lambda: charts.agent_charts(agent_id, rng),
    )  # fmt: skip
