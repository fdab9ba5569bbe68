"""The events query API: ``GET /api/v1/events``, one tenant's events newest first, a page
at a time (docs/api.md, "The events API").

Authenticated by a token with the ``read`` scope (``tenancy.api_auth.ReadBearer``): a
tenant's token reads its tenant; a person's names the tenant with ``tenant_id``. The query
string is read by ``events.selectors.page``, as the Python API's ``EventService`` reads
its filters, so both refuse the same mistakes with the same codes (E10401-E10407); the
schema below only describes the parameters, it checks none of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import BaseModel, Field

from core.errors import ErrorCode
from core.listing import refuse
from core.schemas import API_ERRORS, ErrorOut
from events import selectors
from events.facade import EventRecord
from events.models import Severity
from tenancy.api_auth import ReadBearer, read_tenant

router = Router(auth=ReadBearer(), tags=["events"])

# Keys whose repeats add up, as their values separated by commas do (``?severity=error&severity=critical``).
LISTS = ("event_type", "severity")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50


def _text(description: str, **schema: Any) -> Any:
    # Every parameter is taken as text and read by events.selectors: ninja refusing one
    # first would answer with another code. ``schema`` is what the OpenAPI entry says of it.
    return Field("", description=description, json_schema_extra=schema or None)


class EventsQuery(Schema):
    tenant_id: str = _text(
        "The tenant's slug or id. A personal token must name one unless its person belongs to exactly "
        "one tenant; a tenant token reads its own tenant (naming another is E10005)."
    )
    event_type: str = _text(
        f"Event types separated by commas (at most {selectors.MAX_TYPES}); a type no event of the tenant has is E10407."
    )
    agent_id: str = _text("An agent's id or external id.")
    severity: str = _text(f"Severities separated by commas: {', '.join(Severity.values)}.")
    text: str = _text("Text looked for in the message and the data, in any case.")
    start_time: str = _text("Events at or after this time (ISO 8601, with a timezone).", format="date-time")
    end_time: str = _text("Events at or before this time (ISO 8601); not before start_time.", format="date-time")
    limit: str = _text(
        f"Events per page, 1 to {MAX_LIMIT}.", type="integer", minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT
    )
    offset: str = _text(
        "Events to skip; past the last event is E10405. Prefer the cursor for deep pages.",
        type="integer",
        minimum=0,
        default=0,
    )
    cursor: str = _text("The next_cursor of the previous page of the same query; not with offset.")


class EventOut(BaseModel):
    """One stored event, as ``events.facade.EventRecord`` gives it."""

    id: int
    timestamp: datetime
    event_type: str
    severity: str
    agent_id: UUID | None
    message: str
    data: dict[str, Any]


class EventsOut(BaseModel):
    total: int = Field(description="How many events the query finds in all.")
    total_is_estimate: bool = Field(
        description="False: total is exact. True: past 10,000 it is the database's estimate."
    )
    next_cursor: str | None = Field(description="Pass as cursor= for the next page; null on the last page.")
    events: list[EventOut]


FIELDS = tuple(EventOut.model_fields)


def _params(request: HttpRequest) -> dict[str, Any]:
    """The query string as ``events.selectors`` reads it: a key given more than once is
    refused (E10401), except the lists, whose values are joined."""
    params: dict[str, Any] = {}
    for key, values in request.GET.lists():
        if len(values) > 1 and key in LISTS:
            params[key] = ",".join(values)
        elif len(values) > 1 and (key in selectors.KEYS or key == "tenant_id"):
            raise refuse(ErrorCode.EVENT_INVALID_QUERY, key, f"“{key}” may be given once.")
        else:
            params[key] = values if len(values) > 1 else values[0]  # an unknown key: refused by its name
    return params


@router.get(
    "",
    response={200: EventsOut, API_ERRORS: ErrorOut},
    summary="Read a tenant's events, newest first",
)
def events(request: HttpRequest, filters: Query[EventsQuery]) -> dict[str, Any]:
    """One page of the tenant's events, filtered by type, agent, severity, time and text;
    ``total`` counts them all (exact up to 10,000, then an estimate, ``total_is_estimate``).
    Page on with ``cursor=<next_cursor>``, or with ``offset``. Each bad parameter has its
    own code: E10401 a filter that is not valid (an unknown key, a control character),
    E10402 an unreadable time, E10403 an end before its start, E10404 a limit over 1,000,
    E10405 an offset past the end, E10406 a cursor not of this query's tenant, E10407 an
    event type the tenant never stored."""
    params = _params(request)
    tenant_id = read_tenant(
        request.auth,  # type: ignore[attr-defined]
        str(params.pop("tenant_id", "")),
        unnamed=ErrorCode.EVENT_INVALID_QUERY,
    )
    found = selectors.page(tenant_id, params, known_types=True)
    records = [EventRecord.of(e) for e in found.events]
    return {
        "total": found.total.value,
        "total_is_estimate": not found.total.exact,
        "next_cursor": found.next_cursor,
        "events": [{name: getattr(r, name) for name in FIELDS} for r in records],
    }
