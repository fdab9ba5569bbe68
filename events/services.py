"""Writes of the event store: events agents report, and events the console records
itself (an agent gone silent, a stop not confirmed). Stored in the caller's transaction;
``task.completed`` events are published to the tenant's hub topic after commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from core.dedup import insert_new
from events.models import Event, Severity
from realtime import hub

PUBLISHED_TYPES = {"task.completed": "task.completed"}  # event type → hub topic


@dataclass(frozen=True)
class NewEvent:
    type: str
    occurred_at: datetime
    agent_id: UUID | None = None
    external_id: str | None = None  # the agent's, for the published notice
    severity: str = Severity.INFO
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    uid: UUID | None = None  # set by a sender, so a retried batch is stored once


def events_record(*, tenant_id: int, events: Sequence[NewEvent]) -> tuple[int, int]:
    """Store events, skipping those whose ``uid`` is stored; returns (stored, duplicates)."""
    rows = [
        Event(
            tenant_id=tenant_id,
            agent_id=e.agent_id,
            uid=e.uid,
            type=e.type,
            severity=e.severity,
            message=e.message,
            data=e.data,
            occurred_at=e.occurred_at,
        )
        for e in events
    ]
    stored, duplicates = insert_new(Event, tenant_id, rows)
    inserted = {id(row) for row in stored}
    for topic in set(PUBLISHED_TYPES.values()):
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
                if PUBLISHED_TYPES.get(row.type) == topic and id(row) in inserted
            ),
        )
    return len(stored), duplicates
