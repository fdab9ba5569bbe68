from __future__ import annotations

from celery import shared_task

from control import bulk, services


@shared_task(name="control.tasks.purge_idempotency", ignore_result=True, time_limit=300, soft_time_limit=240)
def purge_idempotency() -> int:
    return services.idempotency_purge()


@shared_task(name="control.tasks.resume_expired_pauses", ignore_result=True, time_limit=120, soft_time_limit=100)
def resume_expired_pauses() -> int:
    return services.control_resume_expired()


# Acknowledged when done, and given back when its worker dies: a batch whose worker is
# killed mid-way runs again on another (after the broker's visibility timeout), and its
# items replay what they already did (docs/operations.md, "Faults").
@shared_task(
    name="control.tasks.run_batch", ignore_result=True, time_limit=600, soft_time_limit=540, acks_late=True,
    reject_on_worker_lost=True,
)  # fmt: skip
def run_batch(batch_id: str) -> None:
    bulk.bulk_run(batch_id)
