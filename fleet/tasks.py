"""The fleet's tasks. Each runs on a queue of its own kind (``CELERY_TASK_ROUTES`` in
settings, docs/operations.md "Background work"): the short periodic checks on ``control``,
rollups and purges on ``background``, so heavy work never holds up control."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from fleet import liveness, rollups


@shared_task(name="fleet.tasks.mark_unresponsive", ignore_result=True, time_limit=60, soft_time_limit=50)
def mark_unresponsive() -> int:
    """Silent agents, and emergency stops not confirmed in time (the same cadence)."""
    return len(liveness.agents_mark_unresponsive()) + len(liveness.agents_flag_unconfirmed_stops())


@shared_task(name="fleet.tasks.rollup_metrics", ignore_result=True, time_limit=300, soft_time_limit=240)
def rollup_metrics() -> int:
    """The routine rollup, then one bounded step of the backlog of dirty hours."""
    return rollups.rollup_recent() + rollups.rollup_backlog().written


@shared_task(name="fleet.tasks.rollup_backlog", ignore_result=True, time_limit=300, soft_time_limit=240)
def rollup_backlog() -> int:
    """One bounded step of the backlog, started after a batch of late samples."""
    return rollups.rollup_backlog().written


@shared_task(name="fleet.tasks.rollup_range", ignore_result=True, time_limit=300, soft_time_limit=240)
def rollup_range(start: str, end: str) -> int:
    """Kept for messages queued before the backlog existed: it marks the range's hours
    dirty (clamped to retention) and runs one bounded step, never the whole range."""
    rollups.rollup_mark_range(datetime.fromisoformat(start), datetime.fromisoformat(end))
    return rollups.rollup_backlog().written


@shared_task(name="fleet.tasks.purge_metrics", ignore_result=True, time_limit=1800, soft_time_limit=1700)
def purge_metrics() -> dict[str, int]:
    return rollups.purge_metrics()
