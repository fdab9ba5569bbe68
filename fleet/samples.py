"""Writes of the metric store: batches of samples folded into per-minute rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from core import runner
from fleet import rollups, sql
from fleet.models import MAX_FIELDS, SUM_FIELDS
from fleet.selectors import agent_refs
from tenancy.models import Tenant


class Sample(sql.Reading, Protocol):
    """A reading of one agent (by external id) at a time; with an ``id``, stored once
    however often it is sent."""

    @property
    def external_id(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def id(self) -> UUID | None: ...


class Recorded(NamedTuple):
    """A batch's outcome: samples merged, minute rows written, samples skipped because
    their id was seen before (a retried batch, or the same id twice in one)."""

    accepted: int
    written: int
    duplicates: int


def merge_minutes(rows: Sequence[sql.MinuteRow]) -> int:
    """Fold rows into the minute rows; returns the minute rows written.

    1. Merge in memory first, since one statement may not touch the same row twice.
    2. Upsert the merged rows (``fleet.sql.upsert_minutes``).
    """
    merged: dict[tuple[object, datetime], sql.MinuteRow] = {}
    for row in rows:
        key = (row.agent_id, row.minute)
        seen = merged.get(key)
        if seen is not None:
            sums = {f: getattr(seen, f) + getattr(row, f) for f in SUM_FIELDS}
            maxes = {f: max(getattr(seen, f), getattr(row, f)) for f in MAX_FIELDS}
            row = seen._replace(**sums, **maxes)
        merged[key] = row
    sql.upsert_minutes(list(merged.values()))
    return len(merged)


@transaction.atomic
def metrics_record(*, tenant: Tenant, samples: Sequence[Sample]) -> Recorded:
    """Store a batch of samples (every agent must exist, or nothing is stored).

    1. Check every agent exists.
    2. Claim the samples' ids in the tenant's ledger (``fleet.sql.claim_samples``), in this
       transaction: an id seen before, or twice in the batch, is a duplicate and skipped.
    3. Merge the rest into the minute rows.
    4. Samples older than the routine rollup's look-back (an agent catching up after an
       outage) mark their hours dirty; a bounded backlog run starts once this commits.
    """
    now = timezone.now()
    agents = agent_refs(tenant, (s.external_id for s in samples))
    fresh = sql.claim_samples(tenant.pk, [s.id for s in samples if s.id is not None], now)
    kept = []
    for sample in samples:
        if sample.id is not None:
            if sample.id not in fresh:
                continue
            fresh.discard(sample.id)  # a second copy in this batch is a duplicate too
        kept.append(sample)
    written = merge_minutes([sql.minute_row(agents[s.external_id].pk, tenant.pk, s.at, s) for s in kept])
    late = [s.at for s in kept if s.at < now - rollups.LOOKBACK]
    if late and rollups.rollup_mark_dirty(tenant_id=tenant.pk, times=late, now=now):
        runner.enqueue("fleet.tasks.rollup_backlog")
    return Recorded(accepted=len(kept), written=written, duplicates=len(samples) - len(kept))
