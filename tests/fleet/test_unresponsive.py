from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from core.runner import EmbeddedRunner
from events.models import Event
from fleet import liveness
from fleet.models import Agent, ObservedState
from fleet.tasks import mark_unresponsive
from tests.conftest import wait_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _agent(tenant, name, state, seconds_ago):
    return AgentFactory.create(
        tenant=tenant,
        external_id=name,
        observed_state=state,
        last_heartbeat_at=None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago),
    )


def test_agents_silent_for_three_intervals_are_marked_unresponsive_with_an_event(tenant_a):
    # The heartbeat interval is 10 s: silent for more than 30 s is unresponsive.
    fresh = _agent(tenant_a, "fresh", ObservedState.RUNNING, 29)
    silent = _agent(tenant_a, "silent", ObservedState.RUNNING, 31)
    paused = _agent(tenant_a, "paused", ObservedState.PAUSED, 300)
    stopped = _agent(tenant_a, "stopped", ObservedState.STOPPED, 300)
    marked = liveness.agents_mark_unresponsive(now=NOW)
    assert set(marked) == {silent.pk, paused.pk}
    states = dict(Agent.objects.values_list("external_id", "observed_state"))
    assert states == {"fresh": "running", "silent": "unresponsive", "paused": "unresponsive", "stopped": "stopped"}
    event = Event.objects.get(agent=silent)
    assert event.type == "agent.unresponsive"
    assert event.data["previous_state"] == "running"
    assert fresh.pk not in marked and stopped.pk not in marked


def test_an_agent_that_never_reported_is_marked_once_registration_is_old(tenant_a):
    with time_machine.travel(NOW - timedelta(minutes=5), tick=False):
        old = AgentFactory.create(tenant=tenant_a, external_id="old")
    with time_machine.travel(NOW - timedelta(seconds=5), tick=False):
        new = AgentFactory.create(tenant=tenant_a, external_id="new")
    assert liveness.agents_mark_unresponsive(now=NOW) == [old.pk]
    new.refresh_from_db()
    assert new.observed_state == ObservedState.STARTING


def test_marking_twice_marks_and_records_once(tenant_a):
    _agent(tenant_a, "silent", ObservedState.RUNNING, 60)
    assert len(liveness.agents_mark_unresponsive(now=NOW)) == 1
    assert liveness.agents_mark_unresponsive(now=NOW + timedelta(minutes=1)) == []
    assert Event.objects.count() == 1


def test_a_heartbeat_brings_an_unresponsive_agent_back(tenant_a, token_a, client):
    agent = _agent(tenant_a, "silent", ObservedState.UNRESPONSIVE, 600)
    response = client.post(
        f"/api/v1/ingest/agents/{agent.external_id}/heartbeat",
        '{"state": "running"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_a}",
    )
    assert response.status_code == 200
    agent.refresh_from_db()
    assert agent.observed_state == ObservedState.RUNNING


def test_the_periodic_task_marks_silent_agents(tenant_a):
    silent = AgentFactory.create(
        tenant=tenant_a, observed_state=ObservedState.RUNNING, last_heartbeat_at=datetime.now(UTC) - timedelta(hours=1)
    )
    assert mark_unresponsive() == 1
    silent.refresh_from_db()
    assert silent.observed_state == ObservedState.UNRESPONSIVE


@pytest.mark.django_db(transaction=True)
def test_the_embedded_runner_runs_the_schedule_on_its_timer(tenant_a, settings):
    settings.CELERY_BEAT_SCHEDULE = {"mark": {"task": "fleet.tasks.mark_unresponsive", "schedule": 0.1}}
    silent = AgentFactory.create(
        tenant=tenant_a, observed_state=ObservedState.RUNNING, last_heartbeat_at=datetime.now(UTC) - timedelta(hours=1)
    )
    runner = EmbeddedRunner(workers=1)
    runner.start_periodic()
    try:
        wait_for(
            lambda: Agent.objects.get(pk=silent.pk).observed_state == ObservedState.UNRESPONSIVE,
            timeout=10,
            what="the embedded timer to run mark_unresponsive",
        )
    finally:
        runner.stop_periodic()
        runner.executor.shutdown(wait=True)


@pytest.mark.postgres
@pytest.mark.redis
def test_celery_beat_and_a_real_worker_mark_silent_agents(tenant_a, celery_worker_process):
    silent = AgentFactory.create(
        tenant=tenant_a, observed_state=ObservedState.RUNNING, last_heartbeat_at=datetime.now(UTC) - timedelta(hours=1)
    )
    wait_for(
        lambda: Agent.objects.get(pk=silent.pk).observed_state == ObservedState.UNRESPONSIVE,
        timeout=20,
        what="beat to schedule, and the worker to run, mark_unresponsive",
    )
    assert Event.objects.filter(agent=silent, type="agent.unresponsive").count() == 1
