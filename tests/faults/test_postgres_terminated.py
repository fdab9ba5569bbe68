"""The PostgreSQL connection terminated mid-transaction, for real: a second connection holds
the agent's row, the request's backend waits for it inside its transaction and is ended
with ``pg_terminate_backend``. The request gets a clear 503 (E10902), nothing of it is
stored (no change, no audit row, no idempotency claim), and the same request sent again
succeeds on a new connection, once (docs/operations.md, "Faults"). A heartbeat written with
others (ingest/coalesce.py) whose flush is ended is taken by Django instead, and stored once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from django.test import Client

from audit.models import AuditEntry
from control.models import IdempotencyRecord
from fleet.models import Agent, DesiredState
from tenancy.services import personal_token_create
from tests.conftest import client_for, wait_for
from tests.factories import AgentFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def second_connection(*, autocommit: bool = False) -> psycopg.Connection[Any]:
    params = connection.get_connection_params()
    wanted = {k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")}
    return psycopg.connect(**wanted, autocommit=autocommit)


def terminated_while_waiting(
    hold: Callable[[psycopg.Connection[Any]], object], call: Callable[[], Any], table: str
) -> Any:
    """``call()`` on a thread of its own while ``hold`` (on a second connection, its
    transaction left open) blocks it; the backend waiting on ``table`` is ended with
    ``pg_terminate_backend``, then the hold is let go. Returns what ``call`` answered."""
    answers: list[Any] = []

    def send() -> None:
        try:
            answers.append(call())
        finally:
            connections.close_all()  # this thread's own connection, broken or not

    with second_connection() as holder, second_connection(autocommit=True) as watcher:
        hold(holder)
        request = threading.Thread(target=send)
        request.start()
        waiting = wait_for(
            lambda: watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query ILIKE %s",
                [f"%{table}%"],
            ).fetchone(),
            what=f"the request to wait on {table}",
        )
        watcher.execute("SELECT pg_terminate_backend(%s)", [waiting[0]])  # type: ignore[index]
        request.join(timeout=30)
        holder.rollback()
    assert not request.is_alive() and len(answers) == 1
    return answers[0]


def pause(token: str, agent: Agent, key: str) -> Any:
    return Client().post(
        f"/api/v1/agents/{agent.pk}/pause",
        json.dumps({"reason": "deploy", "mode": "now"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


def test_a_pause_whose_connection_is_terminated_stores_nothing_and_the_retry_pauses_once(tenant_a, admin_a):
    agent = AgentFactory.create(tenant=tenant_a, external_id="worker-1", desired_state=DesiredState.RUNNING)
    token = personal_token_create(user=admin_a, name="cli")[1]
    lost = terminated_while_waiting(
        lambda holder: holder.execute("SELECT 1 FROM fleet_agent WHERE id = %s FOR UPDATE", [agent.pk]),
        lambda: pause(token, agent, "deploy-1"),
        "fleet_agent",
    )
    assert lost.status_code == 503, lost.content
    error = lost.json()["error"]
    assert (error["code"], error["recoverable"]) == ("E10902", True)
    assert "nothing was changed" in error["message"]

    now = Agent.objects.get(pk=agent.pk)
    assert (now.desired_state, now.version) == (DesiredState.RUNNING, agent.version)
    assert not AuditEntry.objects.filter(action="agent.pause", outcome="success").exists()
    assert not IdempotencyRecord.objects.exists()  # the claim was in the transaction that ended

    again = pause(token, agent, "deploy-1")  # the same request again, as a client retries a 503
    assert again.status_code == 200, again.content
    now = Agent.objects.get(pk=agent.pk)
    assert (now.desired_state, now.version) == (DesiredState.PAUSED, agent.version + 1)
    assert AuditEntry.objects.filter(action="agent.pause", outcome="success").count() == 1
    replay = pause(token, agent, "deploy-1")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert Agent.objects.get(pk=agent.pk).version == agent.version + 1


def test_a_usage_batch_whose_connection_is_terminated_stores_nothing_and_its_retry_stores_it_once(
    tenant_a, token_a, agent_a
):
    from datetime import UTC, datetime
    from uuid import uuid4

    from costs.models import UsageRecord
    from tests.ingest.test_ingest_api import post

    ids = [str(uuid4()) for _ in range(3)]
    now = datetime.now(UTC).isoformat()
    batch = {"records": [{"external_id": "worker-1", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 1,
                          "at": now, "id": uid} for uid in ids]}  # fmt: skip
    lost = terminated_while_waiting(
        # An uncommitted row with the batch's last id: the batch's insert waits on the unique index.
        lambda holder: holder.execute(
            "INSERT INTO costs_usagerecord (tenant_id, agent_id, uid, model, input_tokens, output_tokens, api_calls, "
            "cached_input_tokens, occurred_at, received_at, flagged, flag_reason) "
            "VALUES (%s, %s, %s, 'x', 0, 0, 0, 0, now(), now(), false, '')",
            [tenant_a.pk, agent_a.pk, ids[-1]],
        ),
        lambda: post(token_a, "/usage", batch),
        "costs_usagerecord",
    )
    assert lost.status_code == 503, lost.content
    assert lost.json()["error"]["code"] == "E10902"
    assert not UsageRecord.objects.exists()  # not one record of the batch
    again = post(token_a, "/usage", batch)  # the SDK sends the batch again, with the same ids
    assert again.status_code == 200 and again.json() == {"accepted": 3, "duplicates": 0}
    assert post(token_a, "/usage", batch).json() == {"accepted": 0, "duplicates": 3}
    assert sorted(str(u) for u in UsageRecord.objects.values_list("uid", flat=True)) == sorted(ids)


def test_a_page_whose_connection_is_terminated_says_so_and_changes_nothing(tenant_a, admin_a):
    agent = AgentFactory.create(tenant=tenant_a, external_id="worker-1", desired_state=DesiredState.RUNNING)
    client = client_for(admin_a)
    form = {"reason": "deploy", "mode": "now", "idempotency_key": "form-1"}
    lost = terminated_while_waiting(
        lambda holder: holder.execute("SELECT 1 FROM fleet_agent WHERE id = %s FOR UPDATE", [agent.pk]),
        lambda: client.post(f"/t/acme/agents/{agent.pk}/control/pause/", form),
        "fleet_agent",
    )
    assert lost.status_code == 503 and lost["Retry-After"] == "1"
    page = lost.content.decode()
    assert "lost its database" in page and "E10902" in page and "nothing was changed" in page
    assert Agent.objects.get(pk=agent.pk).desired_state == DesiredState.RUNNING
    again = client.post(f"/t/acme/agents/{agent.pk}/control/pause/", form)  # sent again: a new connection
    assert again.status_code == 302
    assert Agent.objects.get(pk=agent.pk).desired_state == DesiredState.PAUSED


def test_a_flush_of_heartbeats_whose_connection_is_terminated_is_answered_by_django_once(
    asgi_server, tenant_a, token_a
):
    """The coalesced heartbeat path (ingest/coalesce.py): its flush's backend waits on the
    agent's row and is ended; the flush rolls back, Django takes the heartbeat (and waits on
    the row too), and once the row is let go the heartbeat is stored once and answered."""
    import httpx

    from fleet.models import MetricMinute

    agent = AgentFactory.create(tenant=tenant_a, external_id="worker-1")
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(
            httpx.post(
                f"{asgi_server.url}/api/v1/ingest/agents/worker-1/heartbeat",
                json={"state": "running", "metrics": {"cpu_percent": 5.0, "tokens": 7}},
                headers={"Authorization": f"Bearer {token_a}"},
                timeout=30,
            )
        )

    def waiting_on_the_row(kind: str) -> Any:
        return watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query ILIKE '%%fleet_agent%%' AND (query ILIKE '%%unnest%%') = %s",
            [kind == "flush"],
        ).fetchone()

    with second_connection() as holder, second_connection(autocommit=True) as watcher:
        holder.execute("SELECT 1 FROM fleet_agent WHERE id = %s FOR UPDATE", [agent.pk])
        request = threading.Thread(target=send)
        request.start()
        flush = wait_for(lambda: waiting_on_the_row("flush"), what="the flush to wait on the agent's row")
        watcher.execute("SELECT pg_terminate_backend(%s)", [flush[0]])  # type: ignore[index]
        wait_for(lambda: waiting_on_the_row("django"), what="Django's heartbeat to wait on the agent's row")
        holder.rollback()
        request.join(timeout=30)
    assert not request.is_alive() and len(answers) == 1
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["external_id"] == "worker-1"
    now = Agent.objects.get(pk=agent.pk)
    assert now.last_heartbeat_at is not None and now.cpu_percent == 5.0
    assert [m.samples for m in MetricMinute.objects.filter(agent=agent)] == [1]  # stored once
