"""Writes of cost tracking: model usage that agents report. Always stored, since it is
money already spent; what an agent reports after it was told to stop is flagged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from core.dedup import insert_new
from costs.models import UsageRecord

STOPPED_FLAG = "reported after an emergency stop"


@dataclass(frozen=True)
class NewUsage:
    agent_id: UUID
    model: str
    occurred_at: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    api_calls: int = 0
    agent_stopped: bool = False  # the agent was told to stop when it reported this
    uid: UUID | None = None  # set by a sender, so a retried batch is stored once


def usage_record(*, tenant_id: int, records: Sequence[NewUsage]) -> tuple[int, int]:
    """Store usage, skipping records whose ``uid`` is stored; returns (stored, duplicates)."""
    rows = [
        UsageRecord(
            tenant_id=tenant_id,
            agent_id=r.agent_id,
            uid=r.uid,
            model=r.model,
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            api_calls=r.api_calls,
            occurred_at=r.occurred_at,
            flagged=r.agent_stopped,
            flag_reason=STOPPED_FLAG if r.agent_stopped else "",
        )
        for r in records
    ]
    stored, duplicates = insert_new(UsageRecord, tenant_id, rows)
    return len(stored), duplicates
