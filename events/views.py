"""The events page (docs/events.md): a tenant's events for every role of it, filtered by
the URL's query string (so a view can be shared), newest first, a page at a time by
cursor, with a bounded total; one event's page; and the live tail's settings for the
page's script (``static/js/tail.js``), which reads new events from the event socket.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import prefetch_related_objects
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from core.errors import InterfaceError
from core.http import ConsoleRequest
from core.listing import refuse
from events import selectors
from events.models import Event, Severity
from tenancy.decorators import tenant_view
from tenancy.models import Membership

PAGE = 50
MAX_PAGE = 200
# The quick ranges: the URL says "the last hour", and means it whenever it is opened.
RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
RANGE_LABELS = {"15m": "15 min", "1h": "1 h", "24h": "24 h", "7d": "7 days"}
# Around an event, the audit entries of its agent (admins: the audit trail page).
AUDIT_SPAN = timedelta(minutes=10)


def _params(request: ConsoleRequest) -> dict[str, Any]:
    """The query string as the selectors read it: several types or severities (a repeated
    key, as the form sends them) joined by commas; a quick range as its start."""
    params: dict[str, Any] = {}
    for key in request.GET:
        values = [v for v in request.GET.getlist(key) if v.strip()]
        if values:
            params[key] = ",".join(values) if key in ("event_type", "severity") else values[-1]
    quick = params.pop("range", None)
    if quick is not None:
        if quick not in RANGES:
            raise refuse(selectors.CODES.invalid, "range", f"“range” is one of {', '.join(RANGES)}.")
        if "start_time" in params:
            raise refuse(selectors.CODES.invalid, "range", "Give a quick range or a start time, not both.")
        params["start_time"] = (timezone.now() - RANGES[quick]).isoformat()
    return params


def _tail(query: selectors.EventFilter, tenant_id: int, paged: bool) -> str | None:
    """What the live tail shows (JSON for the page's script), or None where it would mislead:
    a later page, or a range that ends in the past."""
    if paged or (query.end is not None and query.end <= timezone.now()):
        return None
    agents: list[str] = []
    if query.agent:
        agents = [str(pk) for pk in selectors.agent_ids(tenant_id, query.agent)] or ["none"]
    return json.dumps(
        {
            "types": query.types, "agents": agents, "severities": query.severities, "text": query.text.lower(),
            "end": query.end.isoformat() if query.end else None,
        }
    )  # fmt: skip


@require_GET
@tenant_view()
def event_list(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    tenant = membership.tenant
    error: InterfaceError | None = None
    found: selectors.Page | None = None
    query = selectors.EventFilter()
    raw = {k: str(v) for k, v in request.GET.items() if str(v).strip()}
    try:
        params = _params(request)
        found = selectors.page(tenant.pk, params, default_limit=PAGE, max_limit=MAX_PAGE)
        query = found.query
    except InterfaceError as exc:
        error = exc
    paged = "cursor" in raw or "offset" in raw
    events = found.events if found else []
    prefetch_related_objects(events, "agent")  # one read for the page's agents, not one per event
    context = {
        "rows": [detail_context(e, membership) for e in events],
        "total": found.total if found else None,
        "next_cursor": found.next_cursor if found else None,
        "query": query,
        "active": any(k not in ("limit",) for k in raw),
        "params": raw,
        "paged": paged,
        "severities": Severity.choices,
        "known_types": sorted(selectors.known_types(tenant.pk)),
        "ranges": RANGE_LABELS,
        "range": raw.get("range", ""),
        "error": error,
        "error_field": (error.details or {}).get("field") if error else None,
        "tail": None if error else _tail(query, tenant.pk, paged),
        "detail_base": reverse("events:detail", args=[tenant.slug, 0]),
    }
    return render(request, "events/events.html", context, status=400 if error else 200)


@require_GET
@tenant_view()
def event_detail(request: ConsoleRequest, membership: Membership, event_id: int) -> HttpResponse:
    """One event; to the page's script (htmx) only its detail, shown inside the list."""
    event = get_object_or_404(Event.objects.select_related("agent"), pk=event_id, tenant=membership.tenant)
    context = detail_context(event, membership)
    if request.htmx:
        return render(request, "events/_detail.html", context)
    return render(request, "events/event.html", context)


def _short(data: dict[str, Any]) -> str:
    """The data in one line, for an event without a message (``static/js/tail.js`` says it so too)."""
    return " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
        for key, value in sorted(data.items())
    )


def detail_context(event: Event, membership: Membership) -> dict[str, Any]:
    """The event, its data as indented JSON, and where it leads: its agent, its alert, its
    audit entry, and (for admins) its agent's audit entries around it."""
    data = event.data if isinstance(event.data, dict) else {}
    alert_id = data.get("alert_id") if event.type.startswith("alert.") else None
    audit_id = data.get("audit_id")
    audit_around = None
    if membership.can_manage and event.agent_id is not None:
        audit_around = urlencode(
            {
                "resource_type": "agent",
                "resource_id": f"{event.agent_id},{event.agent.external_id}" if event.agent else str(event.agent_id),
                "start_time": (event.occurred_at - AUDIT_SPAN).isoformat(),
                "end_time": (event.occurred_at + AUDIT_SPAN).isoformat(),
            }
        )
    return {
        "event": event,
        "summary": event.message or _short(data),
        "data_json": json.dumps(event.data, indent=2, sort_keys=True, default=str),
        "alert_id": alert_id if isinstance(alert_id, int) and not isinstance(alert_id, bool) else None,
        "audit_id": audit_id if membership.can_manage and isinstance(audit_id, int) else None,
        "audit_around": audit_around,
    }
