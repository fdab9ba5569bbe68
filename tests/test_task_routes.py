"""Every task runs on a queue chosen for it: ``control`` for batches and the short
periodic checks, ``background`` for heavy work (docs/operations.md, "Background work")."""

from __future__ import annotations

from celery import current_app
from django.conf import settings

from core import runner

CONTROL = {
    "control.tasks.run_batch",
    "control.tasks.resume_expired_pauses",
    "fleet.tasks.mark_unresponsive",
    "alerts.tasks.evaluate",  # an alert is timely: it never waits behind a rollup
    "alerts.tasks.deliver",
    "audit.tasks.seal",  # short, every few seconds: an entry is unsealed for about one interval
    "approvals.tasks.expire",  # an agent waits on it: never behind a rollup
}


def queue_of(name: str) -> str:
    return str(current_app.amqp.router.route({}, name)["queue"].name)


def test_every_task_is_routed_by_name_to_a_queue_of_its_kind():
    runner._discover_tasks()
    ours = {name for name in current_app.tasks if not name.startswith("celery.")}
    assert ours >= CONTROL
    assert ours == set(settings.CELERY_TASK_ROUTES)
    for name in ours:
        assert queue_of(name) == ("control" if name in CONTROL else "background"), name


def test_the_beat_schedule_keeps_its_meaning_and_each_entry_has_its_queue():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks == {
        "fleet.tasks.mark_unresponsive",
        "fleet.tasks.rollup_metrics",
        "fleet.tasks.purge_metrics",
        "control.tasks.resume_expired_pauses",
        "control.tasks.purge_idempotency",
        "alerts.tasks.evaluate",
        "alerts.tasks.deliver",
        "audit.tasks.seal",
        "events.tasks.purge",
        "costs.tasks.rollup",
        "approvals.tasks.expire",
    }
    assert {t for t in tasks if queue_of(t) == "control"} == CONTROL - {"control.tasks.run_batch"}
