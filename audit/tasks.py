from __future__ import annotations

from celery import shared_task

from audit import chain


@shared_task(name="audit.tasks.seal", ignore_result=True, time_limit=120, soft_time_limit=100)
def seal() -> int:
    """Chain the entries written since the last run (``L10_AUDIT_SEAL_INTERVAL``); the
    number sealed."""
    return chain.seal()
