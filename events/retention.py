"""How long events are kept (docs/operations.md, "Retention"): ``L10_EVENT_RETENTION_DAYS``
(30 by default), then removed by an hourly task a batch at a time, oldest first, each batch
in a transaction of its own: a purge of millions never holds a lock on the table for long,
and ingest writes on between the batches."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from events.models import Event

BATCH = 5_000


def purge(*, now: datetime | None = None, batch: int = BATCH, max_batches: int = 200) -> int:
    """Remove events that occurred before the retention window, up to ``max_batches`` batches
    (the next run goes on); the number removed."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.L10.event_retention_days)
    removed = 0
    for _ in range(max_batches):
        with transaction.atomic():
            ids = list(Event.objects.filter(occurred_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch])
            if ids:
                Event.objects.filter(pk__in=ids).delete()
        removed += len(ids)
        if len(ids) < batch:
            break
    return removed
