from __future__ import annotations

from celery import shared_task

from events import retention


@shared_task(name="events.tasks.purge", ignore_result=True, time_limit=1800, soft_time_limit=1700)
def purge() -> int:
    """Events past ``L10_EVENT_RETENTION_DAYS`` (hourly); the number removed."""
    return retention.purge()
