"""Writes of the event store: events agents report, and events the console records
itself (an agent gone silent, a stop not confirmed). Stored in the caller's transaction;
``task.completed`` events are published to the tenant's hub topic after commit, and
``agent.events`` says, once per agent and batch, that an agent has new events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from core.records import insert_new, values
from events.models import Event, Severity
from realtime import hub

PUBLISHED = {"task.completed": "task.completed"}  # event type → hub topic
RANK = list(Severity.values)  # least to worst, as declared


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
