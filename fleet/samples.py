"""Writes of the metric store: batches of samples folded into per-minute rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from core import runner
from fleet import rollups, sql
from fleet.models import MAX_FIELDS, SUM_FIELDS
from fleet.selectors import agent_refs
from tenancy.models import Tenant


class Sample(sql.Reading, Protocol):
    """A reading of one agent (by external id) at a time."""

    @property
    def external_id(self) -> str: ...
    @property
    def at(self) -> datetime: ...


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
def metrics_record(*, tenant: Tenant, samples: Sequence[Sample]) -> int:
    """Store a batch of samples (every agent must exist, or nothing is stored); returns
    the minute rows written."""
    agents = agent_refs(tenant, (s.external_id for s in samples))
    written = merge_minutes([sql.minute_row(agents[s.external_id].pk, tenant.pk, s.at, s) for s in samples])
    # Samples older than the routine rollup's look-back (an agent catching up after an
    # outage) get their range rolled up again once this commits.
    oldest = min(s.at for s in samples)
    if oldest < timezone.now() - rollups.LOOKBACK:
        runner.enqueue("fleet.tasks.rollup_range", oldest.isoformat(), timezone.now().isoformat())
    return written
