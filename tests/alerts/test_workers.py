"""Two real Celery workers evaluate at once: each transition is written once."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import current_app
from django.db.models import F
from django.utils import timezone

from alerts.models import Alert, AlertRule, AlertTransition
from tests.alerts.conftest import NOW
from tests.conftest import celery_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


def test_two_workers_evaluating_at_once_write_each_transition_once(tmp_path: Path, tenant_a, fleet):
    # The fleet's minutes end now, so the workers' evaluations (at their own "now") see them.

    from fleet.models import MetricMinute

    MetricMinute.objects.update(minute=F("minute") - (NOW - timezone.now().replace(second=0, microsecond=0)))
    for n in range(30):
        AlertRule.objects.create(
            tenant=tenant_a, name=f"r{n}", metric="cpu_percent", threshold=10 + n, created_at=NOW, updated_at=NOW
        )
    with (
        celery_worker(tmp_path, queues="control", beat=False, name="one"),
        celery_worker(tmp_path, queues="control", beat=False, name="two"),
    ):
        for _ in range(12):  # both workers take evaluations at the same time
            current_app.send_task("alerts.tasks.evaluate", queue="control")
        # hot 92 % and other 95 % pass all 30 thresholds (10–39); cool 20 % passes r0–r9.
        expected = 30 + 30 + 10
        wait_for(lambda: Alert.objects.filter(state="firing").count() == expected, timeout=30, what="every alert")
    # Every alert is firing: no evaluation, finished or not, has a transition left to make.
    assert Alert.objects.count() == expected
    assert AlertTransition.objects.filter(from_state="", to_state="pending").count() == expected
    assert AlertTransition.objects.filter(from_state="pending", to_state="firing").count() == expected
