"""Several processes: two uvicorn servers, each with its own hub, deliver an event that a
third process (a Celery worker) published."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fleet.models import ObservedState
from tests.conftest import uvicorn_processes
from tests.factories import AgentFactory
from tests.realtime.conftest import events_socket, frame, subscribe

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def test_two_servers_deliver_what_a_celery_worker_publishes(celery_worker_process, tenant_a, token_a):
    with (
        uvicorn_processes(2) as (one, two),
        events_socket(one, "acme", token=token_a) as first,
        events_socket(two, "acme", token=token_a) as second,
    ):
        subscribe(first, "agent.state.changed")
        subscribe(second, "agent.state.changed")
        # Silent for an hour: the worker's periodic task (every second here) marks it.
        agent = AgentFactory.create(
            tenant=tenant_a,
            external_id="silent-1",
            observed_state=ObservedState.RUNNING,
            last_heartbeat_at=timezone.now() - timedelta(hours=1),
        )
        seen = [frame(first, timeout=20), frame(second, timeout=20)]
    for event in seen:
        assert event["topic"] == "agent.state.changed"
        assert event["data"]["agent_id"] == str(agent.pk)
        assert event["data"]["state"] == "unresponsive"
        assert event["data"]["previous_state"] == "running"
    assert seen[0]["seq"] == seen[1]["seq"]
    agent.refresh_from_db()
    assert agent.observed_state == ObservedState.UNRESPONSIVE
