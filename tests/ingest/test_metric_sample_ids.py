"""Retried batches are stored once: metric samples by their ``id`` (a ledger per tenant,
claimed in the transaction of the minute-row merge), usage records by theirs."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from costs.selectors import quota_usage
from fleet import rollups
from fleet.models import Agent, MetricMinute, MetricSampleId
from tests.conftest import wait_for

API = "/api/v1/ingest"


def post(token: str, path: str, body: Any) -> Any:
    return Client().post(
        API + path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def sample(external_id: str, at: datetime, *, tokens: int = 100, sid: uuid.UUID | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"external_id": external_id, "at": at.isoformat(), "tokens": tokens, "requests": 2}
    if sid is not None:
        body["id"] = str(sid)
    return body


def totals(agent: Agent) -> tuple[int, int, int]:
    rows = MetricMinute.objects.filter(agent=agent)
    return (
        sum(r.samples for r in rows),
        sum(r.tokens for r in rows),
        sum(r.requests for r in rows),
    )


@pytest.fixture
def at() -> datetime:
    return datetime.now(UTC).replace(second=5, microsecond=0) - timedelta(minutes=2)


@pytest.mark.django_db
def test_a_retried_metrics_batch_is_stored_once(token_a, agent_a, at):
    batch = {"samples": [sample("worker-1", at + timedelta(seconds=n), sid=uuid.uuid4()) for n in range(3)]}
    assert post(token_a, "/metrics", batch).json() == {"accepted": 3, "duplicates": 0}
    assert post(token_a, "/metrics", batch).json() == {"accepted": 0, "duplicates": 3}
    assert totals(agent_a) == (3, 300, 6)
    assert MetricSampleId.objects.filter(tenant=agent_a.tenant).count() == 3


@pytest.mark.django_db
def test_a_partly_retried_batch_stores_only_its_new_samples(token_a, agent_a, at):
    seen, new = uuid.uuid4(), uuid.uuid4()
    assert post(token_a, "/metrics", {"samples": [sample("worker-1", at, sid=seen)]}).json()["accepted"] == 1
    retried = {
        "samples": [
            sample("worker-1", at, sid=seen),
            sample("worker-1", at, sid=new, tokens=7),
            sample("worker-1", at, sid=new, tokens=7),  # the same id twice in one batch
            sample("worker-1", at, tokens=1),  # no id: merged every time it is sent
        ]
    }
    assert post(token_a, "/metrics", retried).json() == {"accepted": 2, "duplicates": 2}
    assert totals(agent_a) == (3, 108, 6)


@pytest.mark.django_db
def test_another_tenants_sample_with_the_same_id_is_its_own(token_a, token_b, agent_a, agent_b, at):
    sid = uuid.uuid4()
    assert post(token_a, "/metrics", {"samples": [sample("worker-1", at, sid=sid)]}).json()["accepted"] == 1
    assert post(token_b, "/metrics", {"samples": [sample("worker-1", at, sid=sid)]}).json()["accepted"] == 1
    assert totals(agent_a) == totals(agent_b) == (1, 100, 2)


@pytest.mark.django_db
def test_a_refused_batch_claims_no_id(token_a, agent_a, at):
    sid = uuid.uuid4()
    bad = {"samples": [sample("worker-1", at, sid=sid), sample("nobody", at)]}
    assert post(token_a, "/metrics", bad).status_code == 404
    assert not MetricSampleId.objects.exists()
    # Corrected and sent again, the sample is stored.
    assert post(token_a, "/metrics", {"samples": [sample("worker-1", at, sid=sid)]}).json()["accepted"] == 1


@pytest.mark.django_db
def test_the_ledger_is_purged_after_the_minute_retention(token_a, agent_a, at):
    assert post(token_a, "/metrics", {"samples": [sample("worker-1", at, sid=uuid.uuid4())]}).status_code == 200
    keep = datetime.now(UTC) + timedelta(days=2)
    assert rollups.purge_metrics(now=keep)["sample_ids"] == 0
    gone = datetime.now(UTC) + timedelta(days=3, minutes=1)
    assert rollups.purge_metrics(now=gone)["sample_ids"] == 1
    assert not MetricSampleId.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_the_same_batch_sent_twice_at_once_is_stored_once(token_a, agent_a, at):
    assert connection.vendor == "postgresql"
    batch = {"samples": [sample("worker-1", at + timedelta(seconds=n), sid=uuid.uuid4()) for n in range(20)]}
    answers: list[dict[str, int]] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        try:
            answers.append(post(token_a, "/metrics", batch).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    wait_for(lambda: len(answers) == 2, timeout=5, what="both answers")
    assert sorted(a["accepted"] for a in answers) == [0, 20]
    assert sorted(a["duplicates"] for a in answers) == [0, 20]
    assert totals(agent_a) == (20, 2000, 40)


@pytest.mark.django_db
def test_a_retried_usage_batch_with_ids_does_not_double_count(token_a, agent_a):
    Agent.objects.filter(pk=agent_a.pk).update(quotas={"tokens": {"day": 100_000}, "api_calls": {"day": 100}})
    now = datetime.now(UTC)
    records = [
        {
            "id": str(uuid.uuid4()),
            "external_id": "worker-1",
            "model": "gpt-4o",
            "input_tokens": 100 * n,
            "output_tokens": 10,
            "api_calls": 1,
            "at": (now - timedelta(seconds=n)).isoformat(),
        }
        for n in range(1, 4)
    ]
    assert post(token_a, "/usage", {"records": records}).json() == {"accepted": 3, "duplicates": 0}
    # Retried whole, then partly with one new record.
    assert post(token_a, "/usage", {"records": records}).json() == {"accepted": 0, "duplicates": 3}
    extra = {**records[0], "id": str(uuid.uuid4()), "input_tokens": 5, "output_tokens": 0}
    assert post(token_a, "/usage", {"records": [records[1], extra]}).json() == {"accepted": 1, "duplicates": 1}
    used = quota_usage(Agent.objects.get(pk=agent_a.pk), now)
    assert used == {"tokens": {"day": 600 + 30 + 5}, "api_calls": {"day": 4}}
    heartbeat = post(token_a, "/agents/worker-1/heartbeat", {"state": "running"}).json()
    assert heartbeat["usage"] == used
