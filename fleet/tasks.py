from __future__ import annotations

from celery import shared_task

from fleet import services


@shared_task(name="fleet.tasks.mark_unresponsive", ignore_result=True, time_limit=60, soft_time_limit=50)
def mark_unresponsive() -> int:
    return len(services.agents_mark_unresponsive())
