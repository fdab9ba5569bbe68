"""A Celery worker killed (SIGKILL) in the middle of a bulk pause, for real: the batch's
task is acknowledged late, so the broker gives it to another worker after its visibility
timeout, and its items replay what they had already done (their idempotency keys): every
agent ends paused once, with one audit row each, and the batch finishes (docs/operations.md,
"Faults")."""

from __future__ import annotations

import os
import signal

import pytest

from audit.models import AuditEntry
from audit.services import Actor
from control.bulk import bulk_start
from control.models import Batch, BatchItem, ItemOutcome
from control.rules import Action
from fleet.models import Agent, DesiredState
from tests.conftest import celery_worker, wait_for
from tests.factories import AgentFactory
from tests.faults.test_postgres_terminated import second_connection

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
AGENTS = 8
# In the workers: the broker gives an unacknowledged task back after 2 s, and a dead
# worker's agent lock lapses after 1 s, so the second worker's run finds neither in its way
# for long.


def paused() -> int:
    return Agent.objects.filter(external_id__startswith="bulk-", desired_state=DesiredState.PAUSED).count()


def test_a_batch_whose_worker_is_killed_finishes_on_another_once(tmp_path, tenant_a, operator_a):
    agents = [AgentFactory.create(tenant=tenant_a, external_id=f"bulk-{n}") for n in range(AGENTS)]
    versions = {a.pk: a.version for a in agents}
    held = agents[-1]
    batch = bulk_start(
        tenant=tenant_a, actor=Actor(user=operator_a), action=Action.PAUSE, agents=agents, reason="freeze"
    )
    with second_connection() as holder, second_connection(autocommit=True) as watcher:
        # The last agent's row is held: the first worker's run stops there, the rest done.
        holder.execute("SELECT 1 FROM fleet_agent WHERE id = %s FOR UPDATE", [held.pk])
        # Not purged: the batch's task is queued already.
        with celery_worker(
            tmp_path, queues="control", beat=False, name="first", purge=False,
            L10_CELERY_VISIBILITY_TIMEOUT="2", L10_CONTROL_LOCK_TTL="1",
        ) as first:  # fmt: skip
            wait_for(lambda: paused() == AGENTS - 1, timeout=30, what="every agent but the held one to be paused")
            wait_for(
                lambda: watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone(),
                what="the run to wait on the held agent",
            )
            os.kill(first.pid, signal.SIGKILL)  # mid-batch: no outcome of this chunk was saved
            first.wait(timeout=10)
        assert not Batch.objects.get(pk=batch.pk).finished_at
        assert BatchItem.objects.filter(batch=batch, outcome=ItemOutcome.PENDING).count() == AGENTS
        holder.rollback()

    with celery_worker(
        tmp_path, queues="control", beat=False, name="second", L10_CELERY_VISIBILITY_TIMEOUT="2",
        L10_CONTROL_LOCK_TTL="1",
    ):  # fmt: skip
        wait_for(
            lambda: Batch.objects.filter(pk=batch.pk, finished_at__isnull=False).exists(),
            timeout=60, what="the batch to be given to the second worker and to finish",
        )  # fmt: skip

    items = list(BatchItem.objects.filter(batch=batch))
    assert [i.outcome for i in items] == [ItemOutcome.SUCCESS] * AGENTS, [(i.outcome, i.message) for i in items]
    for agent in Agent.objects.filter(pk__in=versions):
        assert (agent.desired_state, agent.version) == (DesiredState.PAUSED, versions[agent.pk] + 1), agent
    pauses = AuditEntry.objects.filter(action="agent.pause", outcome="success", batch_id=batch.pk)
    assert pauses.count() == AGENTS  # once each: the replayed items did not pause again
