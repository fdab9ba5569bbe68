from __future__ import annotations

from celery import shared_task

from alerts import evaluation


@shared_task(name="alerts.tasks.evaluate", ignore_result=True, time_limit=120, soft_time_limit=100)
def evaluate() -> int:
    """Every tenant's rules (``L10_ALERT_EVAL_INTERVAL``); the number of transitions made."""
    return len(evaluation.evaluate().transitions)
