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
    return rollups.rollup_recent()


@shared_task(name="fleet.tasks.rollup_range", ignore_result=True, time_limit=600, soft_time_limit=540)
def rollup_range(start: str, end: str) -> int:
    """Re-roll a past range (ISO times), after a batch of late samples."""
    return rollups.rollup_range(datetime.fromisoformat(start), datetime.fromisoformat(end))


@shared_task(name="fleet.tasks.purge_metrics", ignore_result=True, time_limit=1800, soft_time_limit=1700)
def purge_metrics() -> dict[str, int]:
    return rollups.purge_metrics()
