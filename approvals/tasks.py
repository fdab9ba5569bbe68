from __future__ import annotations

from celery import shared_task

from approvals import services


@shared_task(name="approvals.tasks.expire", ignore_result=True, time_limit=300, soft_time_limit=280)
def expire() -> int:
    """Pending requests past their time, decided by their ``on_timeout`` (every few seconds)."""
    return services.expire_due()
