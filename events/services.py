"""Writes of the event store: events agents report, and events the console records
itself (``emit``: a state change, a control action, an alert firing or resolving, an
agent gone silent). Stored in the caller's transaction; after commit each stored event is
published on the tenant's ``events.stored`` topic, one word per batch (the events page's
live tail, docs/events.md),
``task.completed`` events on their own topic too, and ``agent.events`` says, once per
agent and batch, that an agent has new events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils import timezone

from core.records import insert_new, values
from events.models import Event, Severity
from realtime import hub

PUBLISHED = {"task.completed": "task.completed"}  # event type → hub topic
RANK = list(Severity.values)  # least to worst, as declared
# The live tail is sent an event's data only while its JSON is this short; the rest is
# one click away, on the event's own page. Of a bigger batch it is sent the newest
# ``TAIL_BATCH`` events and how many it was not sent.
TAIL_DATA = 4000
TAIL_BATCH = 100


@dataclass(frozen=True)
class NewEvent:
    """An event to store: the fields of ``Event``, and the agent's external id to publish."""

    type: str
    occurred_at: datetime
    agent_id: UUID | None = None
    severity: str = Severity.INFO
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    uid: UUID | None = None  # set by a sender, so a retried batch is stored once
    external_id: str | None = None


def events_record(*, tenant_id: int, events: Sequence[NewEvent]) -> tuple[int, int]:
    """Store events, skipping those whose ``uid`` is stored; returns (stored, duplicates)."""
    rows = [Event(tenant_id=tenant_id, **values(e, leave_out=("external_id",))) for e in events]
    stored, duplicates = insert_new(Event, tenant_id, rows)
    inserted = {id(row) for row in stored}
    tail = [_tail(row, event.external_id) for row, event in zip(rows, events, strict=True) if id(row) in inserted]
    if tail:  # one word per batch, however big: a burst never floods a socket's outbox
        hub.publish(
            tenant_id, "events.stored", {"events": tail[-TAIL_BATCH:], "omitted": max(0, len(tail) - TAIL_BATCH)}
        )
    for event_type, topic in PUBLISHED.items():
        hub.publish_many(
            tenant_id,
            topic,
            (
                {
                    "agent_id": row.agent_id,
                    "external_id": event.external_id,
                    "event_id": row.uid,
                    "severity": row.severity,
                    "data": row.data,
                    "timestamp": row.occurred_at,
                }
                for row, event in zip(rows, events, strict=True)
                if row.type == event_type and id(row) in inserted
            ),
        )
    # One word per agent and batch that it has new events (pages showing them read them
    # again); the events themselves stay in the store.
    per_agent: dict[UUID, list[Event]] = {}
    for row in stored:
        if row.agent_id is not None:
            per_agent.setdefault(row.agent_id, []).append(row)
    hub.publish_many(
        tenant_id,
        "agent.events",
        (
            {"agent_id": agent_id, "count": len(rows_of), "worst": max((r.severity for r in rows_of), key=RANK.index)}
            for agent_id, rows_of in per_agent.items()
        ),
    )
    return len(stored), duplicates


def emit(
    tenant_id: int, event_type: str, *, agent_id: UUID | None = None, external_id: str | None = None,
    severity: str = Severity.INFO, message: str = "", data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:  # fmt: skip
    """Record one event the console itself noticed or did, in the caller's transaction;
    it is published after commit like any stored event."""
    event = NewEvent(
        type=event_type, occurred_at=at or timezone.now(), agent_id=agent_id, severity=severity,
        message=message[:1000], data=data or {}, external_id=external_id,
    )  # fmt: skip
    events_record(tenant_id=tenant_id, events=[event])


def _tail(row: Event, external_id: str | None) -> dict[str, Any]:
    """An event as the live tail shows it (docs/api.md, "The event socket": ``events.stored``)."""
    item: dict[str, Any] = {
        "id": row.pk,
        "event_type": row.type,
        "severity": row.severity,
        "agent_id": row.agent_id,
        "external_id": external_id,
        "message": row.message,
        "timestamp": row.occurred_at,
    }
    text = json.dumps(row.data, separators=(",", ":"), default=str)
    if len(text) <= TAIL_DATA:
        item["data"] = row.data
    else:
        item["data"], item["data_cut"] = None, True
    return item
