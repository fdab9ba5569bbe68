"""Parts of pages rendered once and cached as HTML, shared by the tenant's members: they
depend on the tenant's data and the range only (no user, no CSRF token, no "ago"). The
pages (``dashboard.views``) and the live socket (``dashboard.live``) send the same ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.conf import settings
from django.template.loader import render_to_string

from dashboard import charts, selectors
from dashboard.pagecache import Page
from fleet.models import ObservedState
from fleet.series import RANGES, MetricsUnavailable, Range
from tenancy.models import Membership

FLEET_CHARTS = "fleet-charts"


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


def _charts_panel(
    template: str, kind: str, tenant_id: int, parts: tuple[object, ...], context: dict[str, Any], page: Page,
    compute: Callable[[], Any],
) -> str:  # fmt: skip
    """A charts panel as HTML, cached under the charts' own generation; when the metrics
    store fails, a panel that says so (never cached)."""
    try:
        return page.metrics(kind, tenant_id, parts, lambda: str(render(template, {**context, "charts": compute()})))
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
