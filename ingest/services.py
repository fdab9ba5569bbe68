"""Ingest batches: each checked whole (every agent must exist) and written in one
transaction, so a bad request stores nothing. The stores are the apps' own: metric
samples (fleet), events (events), usage (costs)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from costs.services import NewUsage, usage_record
from events.services import NewEvent, events_record
from fleet.models import DesiredState
from fleet.selectors import agent_refs
from ingest.schemas import EventIn, UsageIn
from tenancy.models import Tenant


@transaction.atomic
def events_ingest(*, tenant: Tenant, events: Sequence[EventIn]) -> tuple[int, int]:
    """Store events; returns (stored, duplicates skipped by ``id``)."""
    agents = agent_refs(tenant, (e.external_id for e in events if e.external_id))
    return events_record(
        tenant_id=tenant.pk,
        events=[
            NewEvent(
                type=e.type,
                occurred_at=e.at,
                agent_id=agents[e.external_id].pk if e.external_id else None,
                external_id=e.external_id,
                severity=e.severity,
                message=e.message,
                data=e.data,
                uid=e.id,
            )
            for e in events
        ],
    )


@transaction.atomic
def usage_ingest(*, tenant: Tenant, records: Sequence[UsageIn]) -> tuple[int, int]:
    """Store usage; flag what a stopped agent reported. Returns (stored, duplicates)."""
    agents = agent_refs(tenant, (r.external_id for r in records))
    usage = [
        NewUsage(
            agents[r.external_id].pk,
            r.model,
            r.at,
            r.input_tokens,
            r.output_tokens,
            r.api_calls,
            uid=r.id,
            cached_input_tokens=r.cached_input_tokens,
        )
        for r in records
    ]
    stopped = {agent.pk for agent in agents.values() if agent.desired_state == DesiredState.STOPPED}
    return usage_record(tenant_id=tenant.pk, records=usage, stopped=stopped)
