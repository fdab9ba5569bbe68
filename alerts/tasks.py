from __future__ import annotations

from celery import shared_task

from alerts import evaluation, notify


@shared_task(name="alerts.tasks.evaluate", ignore_result=True, time_limit=120, soft_time_limit=100)
def evaluate() -> int:
    """Every tenant's rules (``L10_ALERT_EVAL_INTERVAL``); the number of transitions made."""
    return len(evaluation.evaluate().transitions)


@shared_task(name="alerts.tasks.deliver", ignore_result=True, time_limit=120, soft_time_limit=100)
def deliver() -> int:
    """Reminders that are due, then every notification due to a target (also started at
    once when an evaluation makes one); the number of deliveries tried."""
    notify.remind()
    return notify.deliver_due()
