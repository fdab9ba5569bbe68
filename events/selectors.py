"""Reading the event store: one tenant's events by type (several), agent, severity, time
and text in the message or data, newest first, a page at a time (core/listing.py).
``page`` is the one reading of a query: the Python API (events/facade.py) and the JSON
API (events/api.py) both answer with it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from core.errors import ErrorCode
from core.listing import (
    Codes,
    Total,
    Window,
    bounded_total,
    check_filters,
    keyset_page,
    offset_past_end,
    read_window,
    refuse,
)
from events import sql
from events.models import Event, Severity

CODES = Codes(
    invalid=ErrorCode.EVENT_INVALID_QUERY,
    bad_time=ErrorCode.EVENT_BAD_TIME,
    bad_range=ErrorCode.EVENT_BAD_RANGE,
    too_many=ErrorCode.EVENT_LIMIT_TOO_LARGE,
    past_end=ErrorCode.EVENT_OFFSET_PAST_END,
    bad_cursor=ErrorCode.EVENT_BAD_CURSOR,
)
KIND = "events"
MAX_TYPES = 20
TEXT_FILTERS = {"event_type": 2000, "agent_id": 200, "severity": 200, "text": 200}
KEYS = frozenset({"event_type", "agent_id", "severity", "text", "start_time", "end_time", "limit", "offset", "cursor"})


@dataclass(frozen=True)
class EventFilter:
    types: tuple[str, ...] = ()
    agent: str = ""  # the agent's id or external id
    severities: tuple[str, ...] = ()
    text: str = ""  # in the message or the data, any case
    start: datetime | None = None
    end: datetime | None = None


def _words(value: Any) -> tuple[str, ...]:
    """A list, or text separated by commas."""
    parts = value if isinstance(value, list | tuple) else str(value or "").split(",")
    return tuple(dict.fromkeys(str(p).strip() for p in parts if str(p).strip()))


def read_query(
    params: Mapping[str, Any], *, tenant_id: int, known_types: bool = False, max_limit: int = 1000,
    default_limit: int = 50,
) -> tuple[EventFilter, Window]:  # fmt: skip
    """The filter and window of ``params``, each value checked once. ``known_types``: an
    event type the tenant has never stored is refused (E10407), as the API does; a page
    shows an empty list instead."""
    check_filters(params, keys=KEYS, texts=TEXT_FILTERS, code=CODES.invalid, what="the events")
    types = _words(params.get("event_type"))
    if len(types) > MAX_TYPES or any(len(t) > 100 for t in types):
        raise refuse(CODES.invalid, "event_type", f"“event_type” names at most {MAX_TYPES} types of 100 characters.")
    severities = _words(params.get("severity"))
    if any(s not in Severity.values for s in severities):
        raise refuse(CODES.invalid, "severity", f"“severity” is one or more of {', '.join(Severity.values)}.")
    window = read_window(
        params, CODES, kind=KIND, tenant_id=tenant_id, max_limit=max_limit, default_limit=default_limit
    )
    if known_types:
        # One index probe per type, however many events each has.
        missing = [t for t in types if not Event.objects.filter(tenant_id=tenant_id, type=t).exists()]
        if missing:
            raise refuse(
                ErrorCode.EVENT_UNKNOWN_TYPE, "event_type", f"No event of this tenant has the type {missing[0]!r}."
            )
    agent = str(params.get("agent_id") or "").strip()
    text = str(params.get("text") or "").strip()
    return EventFilter(types, agent, severities, text, window.start, window.end), window


def events(tenant_id: int | None, query: EventFilter) -> QuerySet[Event]:
    """The events ``query`` names (one tenant's, or every tenant's for None), unordered."""
    found = Event.objects.all() if tenant_id is None else Event.objects.filter(tenant_id=tenant_id)
    if query.types:
        found = found.filter(type__in=query.types)
    if query.agent:
        # The agent's ids first, then their events: an OR across the join (external id or
        # id) is no index condition and reads all of the tenant's events of the filter
        # (docs/performance.md, "The event store").
        found = found.filter(agent_id__in=agent_ids(tenant_id, query.agent))
    if query.severities:
        found = found.filter(severity__in=query.severities)
    if query.start is not None:
        found = found.filter(occurred_at__gte=query.start)
    if query.end is not None:
        found = found.filter(occurred_at__lte=query.end)
    if query.text:
        found = found.annotate(data_text=Cast("data", TextField())).filter(
            Q(message__icontains=query.text) | Q(data_text__icontains=query.text)
        )
    return found


def agent_ids(tenant_id: int | None, ref: str) -> list[UUID]:
    """The ids of the tenant's agents (every tenant's for None) that ``ref`` names, by
    external id or id: the agent filter of the query, and of the events page's live tail."""
    agents = Event._meta.get_field("agent").related_model._default_manager.all()
    if tenant_id is not None:
        agents = agents.filter(tenant_id=tenant_id)
    by_ref = Q(external_id=ref)
    with contextlib.suppress(ValueError):
        by_ref |= Q(pk=UUID(ref))
    return list(agents.filter(by_ref).values_list("pk", flat=True))


def known_types(tenant_id: int, most: int = 200) -> list[str]:
    """The types of the tenant's events (the first ``most``, in order): the page's choices."""
    return sql.types(tenant_id, most)


@dataclass(frozen=True)
class Page:
    """One page of a query: its events newest first, how many the query finds in all (exact
    up to a bound, an estimate past it), and the cursor of the next page (None on the last)."""

    events: list[Event]
    total: Total
    next_cursor: str | None
    query: EventFilter


def page(
    tenant_id: int | None, params: Mapping[str, Any], *, known_types: bool = False, max_limit: int = 1000,
    default_limit: int = 50,
) -> Page:  # fmt: skip
    """The page ``params`` asks for (``KEYS``, each checked by ``read_query``) of one tenant's
    events, or every tenant's for None; ``known_types`` as ``read_query`` takes it. A bad
    value, or an offset past the end, raises its ``InterfaceError`` (E10401-E10407)."""
    scope = tenant_id or 0  # every tenant's: cursors are bound to 0
    query, window = read_query(
        params, tenant_id=scope, known_types=known_types and tenant_id is not None, max_limit=max_limit,
        default_limit=default_limit,
    )  # fmt: skip
    rows = events(tenant_id, query)
    found, after = keyset_page(rows, window, kind=KIND, tenant_id=scope, time_field="occurred_at")
    past = offset_past_end(window, found, CODES.past_end)
    if past is not None:
        raise past
    return Page(found, bounded_total(rows), after, query)
