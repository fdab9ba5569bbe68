"""The event store in the Python API: ``EventService`` (``from l10console.services import
EventService``) and ``EventQuery`` (``from l10console.models import EventQuery``), as
docs/python-api.md shows them; a page is read by ``events.selectors.page``, as the JSON
API (events/api.py) reads it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async

from core.errors import ErrorCode, InterfaceError
from events import selectors
from events.models import Event
from tenancy.selectors import tenant_by_ref


@dataclass(frozen=True)
class EventRecord:
    """One stored event as the Python API gives it."""

    id: int
    timestamp: datetime
    tenant_id: int
    agent_id: UUID | None
    event_type: str
    severity: str
    message: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventRecord:
        return cls(
            id=event.pk, timestamp=event.occurred_at, tenant_id=event.tenant_id, agent_id=event.agent_id,
            event_type=event.type, severity=event.severity, message=event.message, data=event.data,
        )  # fmt: skip


@dataclass(frozen=True)
class EventQuery:
    """Which events to read, every field optional: a tenant's (slug or id) or, without one,
    every tenant's. ``event_type`` and ``severity`` take one value or several (a list, or
    text separated by commas); ``agent_id`` an agent's id or external id; ``text`` is looked
    for in the message and the data."""

    tenant_id: str | int | None = None
    event_type: str | list[str] | None = None
    agent_id: str | None = None
    severity: str | list[str] | None = None
    text: str | None = None
    start_time: datetime | str | None = None
    end_time: datetime | str | None = None
    limit: int = 50
    offset: int = 0
    cursor: str | None = None


@dataclass(frozen=True)
class EventResponse:
    events: list[EventRecord]
    total: int
    total_is_estimate: bool
    next_cursor: str | None


class EventService:
    def __init__(self, event_bus: Any = None) -> None:
        # The seed's signature: the events are read from the console's own store; a bus
        # given here is kept for callers that publish through it.
        self.event_bus = event_bus

    async def query_events(
        self, filters: dict[str, Any] | EventQuery | None = None, *, limit: int | None = None,
        offset: int | None = None,
    ) -> EventResponse:  # fmt: skip
        """The events ``filters`` names (a dict of ``EventQuery``'s fields, or one), newest
        first; ``total`` exact up to 10,000 and an estimate past it. An event type no event
        of the tenant has is refused (E10407), as the other bad filters are (E10401-E10406)."""
        if isinstance(filters, EventQuery):
            query = filters
        else:
            unknown = sorted(set(filters or {}) - set(EventQuery.__dataclass_fields__))
            if unknown:
                raise InterfaceError(
                    ErrorCode.EVENT_INVALID_QUERY, f"“{unknown[0][:40]}” is not a filter of the events.",
                    details={"field": unknown[0][:40]},
                )  # fmt: skip
            query = EventQuery(**(filters or {}))
        changes = {k: v for k, v in (("limit", limit), ("offset", offset)) if v is not None}
        if changes:
            query = EventQuery(**{**asdict(query), **changes})

        def read() -> EventResponse:
            tenant_pk = None
            if query.tenant_id is not None:
                tenant = tenant_by_ref(query.tenant_id)
                if tenant is None:
                    raise InterfaceError(ErrorCode.TENANT_NOT_FOUND)
                tenant_pk = int(tenant.pk)
            params = {k: v for k, v in asdict(query).items() if k != "tenant_id" and v not in (None, "", [])}
            params["limit"], params["offset"] = str(query.limit), str(query.offset)
            found = selectors.page(tenant_pk, params, known_types=True)
            events = [EventRecord.of(e) for e in found.events]
            return EventResponse(events, found.total.value, not found.total.exact, found.next_cursor)

        return await sync_to_async(read)()
