from __future__ import annotations

from celery import shared_task

from control import bulk, services


@shared_task(name="control.tasks.purge_idempotency", ignore_result=True, time_limit=300, soft_time_limit=240)
def purge_idempotency() -> int:
    return services.idempotency_purge()


@shared_task(name="control.tasks.resume_expired_pauses", ignore_result=True, time_limit=120, soft_time_limit=100)
def resume_expired_pauses() -> int:
    return services.control_resume_expired()


@shared_task(name="control.tasks.run_batch", ignore_result=True, time_limit=600, soft_time_limit=540)
def run_batch(batch_id: str) -> None:
    bulk.bulk_run(batch_id)
