from __future__ import annotations

from celery import shared_task

from control import services


@shared_task(name="control.tasks.purge_idempotency", ignore_result=True, time_limit=300, soft_time_limit=240)
def purge_idempotency() -> int:
    return services.idempotency_purge()
