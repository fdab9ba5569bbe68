"""Writes of cost tracking: model usage that agents report. Always stored, since it is
money already spent; what an agent reports after it was told to stop is flagged."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from core.records import insert_new, values
from costs.models import UsageRecord

STOPPED_FLAG = "reported after an emergency stop"


@dataclass(frozen=True)
class NewUsage:
    """Usage to store: the reported fields of ``UsageRecord``."""

    agent_id: UUID
    model: str
    occurred_at: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    api_calls: int = 0
    uid: UUID | None = None  # set by a sender, so a retried batch is stored once


def usage_record(*, tenant_id: int, records: Sequence[NewUsage], stopped: Collection[UUID] = ()) -> tuple[int, int]:
    """Store usage, skipping records whose ``uid`` is stored; flag what agents in
    ``stopped`` (told to stop when they reported it) used. Returns (stored, duplicates)."""
    rows = [
        UsageRecord(
            tenant_id=tenant_id,
            flagged=r.agent_id in stopped,
            flag_reason=STOPPED_FLAG if r.agent_id in stopped else "",
            **values(r),
        )
        for r in records
    ]
    stored, duplicates = insert_new(UsageRecord, tenant_id, rows)
    return len(stored), duplicates
