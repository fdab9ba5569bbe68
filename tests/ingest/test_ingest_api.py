from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client, override_settings

from core.config import L10Settings
from costs.models import UsageRecord
from events.models import Event
from fleet.models import Agent, DesiredState, MetricMinute, ObservedState
from tenancy.models import ApiToken

pytestmark = pytest.mark.django_db

API = "/api/v1/ingest"


def post(token: str | None, path: str, body: Any, *, raw: bool = False, **extra: Any) -> Any:
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if raw else json.dumps(body)
    return Client().post(
        API + path, data=data, content_type=extra.pop("content_type", "application/json"), **headers, **extra
    )


def now_iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def stored_counts() -> tuple[int, int, int, int]:
    return Agent.objects.count(), MetricMinute.objects.count(), Event.objects.count(), UsageRecord.objects.count()


def test_register_creates_the_agent_and_returns_what_it_must_obey(token_a, tenant_a):
    response = post(
        token_a, "/register", {"external_id": "crawler-7", "name": "Crawler 7", "labels": {"team": "search"}}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    agent = Agent.objects.get(tenant=tenant_a, external_id="crawler-7")
    assert body == {
        "agent_id": str(agent.pk),
        "external_id": "crawler-7",
        "desired_state": "running",
        "version": 1,
        "quotas": {},
        "usage": {},
        "heartbeat_interval": 10,
        "pause_mode": None,  # set while paused: "now" or "after_task"
        "pause_until": None,
        "decisions": [],  # of the approval requests a heartbeat names
    }
    assert agent.labels == {"team": "search"}
    assert agent.observed_state == ObservedState.STARTING


def test_registering_again_updates_name_and_labels(token_a, agent_a):
    response = post(token_a, "/register", {"external_id": agent_a.external_id, "labels": {"team": "ads"}})
    assert response.status_code == 200
    agent_a.refresh_from_db()
    assert agent_a.labels == {"team": "ads"}
    assert agent_a.name == "Worker 1"
    assert Agent.objects.count() == 1


def test_heartbeat_records_state_and_metrics_and_answers_desired_state(token_a, agent_a):
    Agent.objects.filter(pk=agent_a.pk).update(
        desired_state=DesiredState.PAUSED, version=4, quotas={"tokens": {"day": 5000}}
    )
    body = {
        "state": "running",
        "metrics": {
            "cpu_percent": 42.5,
            "memory_mb": 512,
            "tokens": 1200,
            "requests": 6,
            "errors": 1,
            "latency_p95_ms": 180.0,
        },
    }
    response = post(token_a, f"/agents/{agent_a.external_id}/heartbeat", body)
    assert response.status_code == 200, response.content
    assert response.json()["desired_state"] == "paused"
    assert response.json()["version"] == 4
    assert response.json()["quotas"] == {"tokens": {"day": 5000}}
    agent_a.refresh_from_db()
    assert agent_a.observed_state == ObservedState.RUNNING
    assert agent_a.last_heartbeat_at is not None
    assert agent_a.cpu_percent == 42.5
    assert agent_a.tokens_per_min == pytest.approx(1200 / (10 / 60))
    row = MetricMinute.objects.get(agent=agent_a)
    assert (row.samples, row.cpu_max, row.tokens, row.errors) == (1, 42.5, 1200, 1)


def test_samples_in_one_minute_merge_into_one_row(token_a, agent_a):
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    samples = [
        {
            "external_id": agent_a.external_id,
            "at": (minute + timedelta(seconds=s)).isoformat(),
            "cpu_percent": cpu,
            "memory_mb": 100.0 + s,
            "tokens": 10,
            "requests": 1,
            "errors": 0,
            "latency_p95_ms": float(s),
        }
        for s, cpu in [(5, 10.0), (20, 30.0), (50, 20.0)]
    ]
    assert post(token_a, "/metrics", {"samples": samples[:2]}).status_code == 200
    assert post(token_a, "/metrics", {"samples": samples[2:]}).status_code == 200
    row = MetricMinute.objects.get(agent=agent_a)
    assert row.samples == 3
    assert row.cpu_avg == pytest.approx(20.0)
    assert row.cpu_max == 30.0
    assert row.memory_max == 150.0
    assert row.tokens == 30
    assert row.latency_p95_ms == 50.0
    assert row.minute == minute


def test_events_and_usage_are_stored_and_a_retried_batch_is_stored_once(token_a, agent_a, tenant_a):
    events = {
        "events": [
            {
                "id": "5b0e9d6e-9a51-4b7e-8f6c-1f1c3e1d2a10",
                "external_id": agent_a.external_id,
                "type": "task.completed",
                "data": {"task": "crawl"},
                "at": now_iso(),
            }
        ]
    }
    usage = {
        "records": [
            {
                "id": "6c1f0e7f-0b62-4c8f-9a7d-2a2d4f2e3b21",
                "external_id": agent_a.external_id,
                "model": "gpt-4o",
                "input_tokens": 1000,
                "output_tokens": 250,
                "api_calls": 1,
                "at": now_iso(),
            }
        ]
    }
    assert post(token_a, "/events", events).json() == {"accepted": 1, "duplicates": 0}
    assert post(token_a, "/events", events).json() == {"accepted": 0, "duplicates": 1}
    assert post(token_a, "/usage", usage).json() == {"accepted": 1, "duplicates": 0}
    assert post(token_a, "/usage", usage).json() == {"accepted": 0, "duplicates": 1}
    event = Event.objects.get(tenant=tenant_a)
    assert (event.type, event.agent_id, event.data) == ("task.completed", agent_a.pk, {"task": "crawl"})
    record = UsageRecord.objects.get(tenant=tenant_a)
    assert (record.model, record.total_tokens, record.flagged) == ("gpt-4o", 1250, False)


def test_usage_from_a_stopped_agent_is_stored_and_flagged(token_a, agent_a):
    Agent.objects.filter(pk=agent_a.pk).update(desired_state=DesiredState.STOPPED)
    usage = {
        "records": [{"external_id": agent_a.external_id, "model": "claude-sonnet", "input_tokens": 5, "at": now_iso()}]
    }
    assert post(token_a, "/usage", usage).status_code == 200
    record = UsageRecord.objects.get()
    assert record.flagged
    assert "stop" in record.flag_reason


# --- bad input: a code, a message that says what is wrong, nothing stored ---------------

RECENT = now_iso(-timedelta(minutes=1))
GOOD_SAMPLE = {"external_id": "worker-1", "at": RECENT, "cpu_percent": 1.0}
DEEP = "[" * 40 + "]" * 40  # 40 levels; 32 are allowed
GOOD_EVENT = {"external_id": "worker-1", "type": "task.completed", "at": RECENT}
GOOD_USAGE = {"external_id": "worker-1", "model": "gpt-4o", "at": RECENT, "input_tokens": 1}

BAD_INPUTS = [
    # (path, body, raw?, expected status, expected code, words in the message)
    ("/metrics", "{not json", True, 400, "E10801", "not valid JSON"),
    ("/metrics", "[1, 2]", True, 400, "E10801", "JSON object"),
    (
        "/metrics",
        '{"samples": [{"external_id": "worker-1", "at": "2026-01-01T00:00:00Z", "cpu_percent": NaN}]}',
        True,
        400,
        "E10801",
        "NaN",
    ),
    ("/metrics", {}, False, 422, "E10802", "samples"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "colour": "blue"}]}, False, 422, "E10802", "colour"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "cpu_percent": "12"}]}, False, 422, "E10802", "cpu_percent"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "tokens": -5}]}, False, 422, "E10802", "tokens"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "tokens": 1.5}]}, False, 422, "E10802", "tokens"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "at": "2026-01-01T00:00:00"}]}, False, 422, "E10802", "timezone"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "at": "yesterday"}]}, False, 422, "E10802", "at"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "at": "2999-01-01T00:00:00Z"}]}, False, 422, "E10805", "ahead"),
    ("/metrics", {"samples": []}, False, 422, "E10802", "empty"),
    ("/metrics", {"samples": [GOOD_SAMPLE] * 1001}, False, 413, "E10804", "limit is 1000"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "external_id": "nobody"}]}, False, 404, "E10807", "nobody"),
    ("/events", {"events": [{"type": "Bad Type!", "at": RECENT}]}, False, 422, "E10802", "type"),
    ("/usage", {"records": [{**GOOD_USAGE, "input_tokens": True}]}, False, 422, "E10802", "input_tokens"),
    # The input rules of core/inputs.py: control characters, lone surrogates, numbers that
    # overflow, nesting, the time window and the external id's characters.
    ("/register", {"external_id": "x", "name": "a\x00b"}, False, 422, "E10802", "NUL"),
    ("/register", {"external_id": "x", "labels": {"team": "se\x00arch"}}, False, 422, "E10802", "NUL"),
    ("/register", {"external_id": "x", "name": "tab\there"}, False, 422, "E10802", "control character"),
    ("/register", {"external_id": "team/x"}, False, 422, "E10802", "external_id"),
    ("/register", {"external_id": "x\x00"}, False, 422, "E10802", "external_id"),
    ("/events", {"events": [{**GOOD_EVENT, "message": "a\x00b"}]}, False, 422, "E10802", "NUL"),
    ("/events", {"events": [{**GOOD_EVENT, "data": {"k": "v\x00"}}]}, False, 422, "E10802", "NUL"),
    ("/events", {"events": [{**GOOD_EVENT, "data": {"k\x00": "v"}}]}, False, 422, "E10802", "NUL"),
    ("/events", {"events": [{**GOOD_EVENT, "data": {"k": ["\ud800"]}}]}, False, 422, "E10802", "surrogate"),
    ("/events", {"events": [{**GOOD_EVENT, "message": "\udfff"}]}, False, 422, "E10802", "message"),
    (
        "/events",
        f'{{"events": [{{"type": "x", "at": "{RECENT}", "data": {{"big": 1e999}}}}]}}',
        True,
        422,
        "E10802",
        "finite",
    ),
    (
        "/events",
        f'{{"events": [{{"type": "x", "at": "{RECENT}", "data": {{"deep": {DEEP}}}}}]}}',
        True,
        422,
        "E10802",
        "deeper",
    ),
    ("/metrics", '{"samples": ' + "[" * 100_000, True, 400, "E10801", "deeper"),
    (
        "/metrics",
        f'{{"samples": [{{"external_id": "worker-1", "at": "{RECENT}", "cpu_percent": 1e999}}]}}',
        True,
        422,
        "E10802",
        "finite",
    ),
    ("/usage", {"records": [{**GOOD_USAGE, "model": "gpt\x00"}]}, False, 422, "E10802", "NUL"),
    ("/events", {"events": [{**GOOD_EVENT, "at": "0001-01-01T00:00:00+05:00"}]}, False, 422, "E10809", "older"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "at": "0001-01-01T00:00:00+05:00"}]}, False, 422, "E10809", "older"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "at": "1970-01-01T00:00:00Z"}]}, False, 422, "E10809", "older"),
    ("/metrics", {"samples": [{**GOOD_SAMPLE, "at": now_iso(-timedelta(days=4))}]}, False, 422, "E10809", "3 days"),
    ("/usage", {"records": [{**GOOD_USAGE, "at": now_iso(-timedelta(days=31))}]}, False, 422, "E10809", "30 days"),
    (
        "/agents/worker-1/heartbeat",
        {"state": "running", "at": "0001-01-01T00:00:00-01:00"},
        False,
        422,
        "E10809",
        "older",
    ),
    ("/agents/bad%00id/heartbeat", {"state": "running"}, False, 422, "E10802", "external_id"),
    ("/register", {"external_id": "has space"}, False, 422, "E10802", "external_id"),
    ("/register", {"external_id": "x", "labels": {"team": 5}}, False, 422, "E10802", "labels"),
    ("/agents/worker-1/heartbeat", {"state": "unresponsive"}, False, 422, "E10802", "state"),
    (
        "/agents/worker-1/heartbeat",
        {"state": "running", "metrics": {"cpu_percent": -1}},
        False,
        422,
        "E10802",
        "cpu_percent",
    ),
    ("/agents/nobody/heartbeat", {"state": "running"}, False, 404, "E10807", "nobody"),
]


@pytest.mark.parametrize(
    ("path", "body", "raw", "status", "code", "words"),
    BAD_INPUTS,
    ids=[f"{b[0]}-{b[4]}-{b[5][:12]}" for b in BAD_INPUTS],
)
def test_each_bad_input_gets_its_code_and_stores_nothing(token_a, agent_a, path, body, raw, status, code, words):
    before = stored_counts()
    response = post(token_a, path, body, raw=raw)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert words.lower() in error["message"].lower()
    assert set(error) >= {"code", "message", "recoverable", "suggestion"}
    assert stored_counts() == before


def test_a_batch_with_one_bad_item_stores_none_of_it(token_a, agent_a):
    samples = [{**GOOD_SAMPLE, "at": now_iso()}, {**GOOD_SAMPLE, "at": now_iso(), "external_id": "ghost"}]
    response = post(token_a, "/metrics", {"samples": samples})
    assert response.json()["error"]["code"] == "E10807"
    assert MetricMinute.objects.count() == 0


def test_a_body_that_is_not_json_is_refused_with_its_content_type(token_a, agent_a):
    response = post(token_a, "/metrics", "samples=1", raw=True, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "E10808"


# --- tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "E10001"),
        ("Bearer ", "E10001"),
        ("Basic dXNlcjpwYXNz", "E10001"),
        ("Bearer l10_deadbeef_" + "x" * 43, "E10002"),
        ("Bearer not-a-token", "E10002"),
    ],
)
def test_a_missing_or_wrong_token_is_refused(agent_a, header, code):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = Client().post(
        f"{API}/agents/worker-1/heartbeat", data='{"state":"running"}', content_type="application/json", **extra
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    agent_a.refresh_from_db()
    assert agent_a.last_heartbeat_at is None


def test_a_revoked_token_is_refused(token_a, agent_a):
    ApiToken.objects.update(revoked_at=datetime.now(UTC))
    response = post(token_a, f"/agents/{agent_a.external_id}/heartbeat", {"state": "running"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "E10003"


def test_a_token_of_tenant_b_never_touches_tenant_a_agents(token_b, agent_a, tenant_b):
    # Tenant B has no agent "worker-1"; A's agent of that name must stay untouched.
    response = post(token_b, f"/agents/{agent_a.external_id}/heartbeat", {"state": "error"})
    assert response.status_code == 404
    sample = {**GOOD_SAMPLE, "at": now_iso()}
    assert post(token_b, "/metrics", {"samples": [sample]}).status_code == 404
    usage = {"records": [{"external_id": agent_a.external_id, "model": "m", "at": now_iso()}]}
    assert post(token_b, "/usage", usage).status_code == 404
    agent_a.refresh_from_db()
    assert agent_a.observed_state == ObservedState.STARTING
    assert MetricMinute.objects.count() == 0
    assert UsageRecord.objects.count() == 0
    # Registering the same external_id under B makes B's own agent, not A's.
    assert post(token_b, "/register", {"external_id": agent_a.external_id}).status_code == 201
    assert Agent.objects.get(tenant=tenant_b).pk != agent_a.pk


def test_the_plain_token_is_nowhere_in_the_database(token_a):
    secret = token_a.split("_")[2]
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, prefix, token_hash FROM tenancy_apitoken")
        rows = cursor.fetchall()
    assert rows
    for row in rows:
        for value in row:
            assert token_a not in str(value)
            assert secret not in str(value)


def test_a_token_records_when_it_was_last_used(token_a, agent_a):
    assert ApiToken.objects.get().last_used_at is None
    post(token_a, f"/agents/{agent_a.external_id}/heartbeat", {"state": "running"})
    assert ApiToken.objects.get().last_used_at is not None


def test_ingest_is_rate_limited_per_token_with_retry_after(token_a, token_b, agent_a, agent_b):
    limited = L10Settings(environ={"L10_INGEST_RATE_LIMIT": "3"})
    # Frozen mid-second, so all requests fall into one one-second window.
    with (
        override_settings(L10=limited),
        time_machine.travel(datetime(2026, 11, 25, 12, 0, 0, 500_000, tzinfo=UTC), tick=False),
    ):
        codes = [post(token_a, f"/agents/{agent_a.external_id}/heartbeat", {"state": "running"}) for _ in range(5)]
        other = post(token_b, f"/agents/{agent_b.external_id}/heartbeat", {"state": "running"})
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    refused = codes[3]
    assert refused.json()["error"]["code"] == "E10806"
    assert int(refused["Retry-After"]) >= 1
    assert other.status_code == 200


def test_the_openapi_schema_is_served(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/ingest/agents/{external_id}/heartbeat" in paths
    assert "/api/v1/ingest/metrics" in paths


def test_an_unknown_api_path_answers_in_the_api_error_shape(client):
    response = client.get("/api/v1/ingest/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E10903"


def test_a_post_to_an_unknown_api_path_gets_the_json_404_not_the_csrf_page():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/api/v1/agents/worker-1/heartbeat", {}, "application/json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "E10903"


@pytest.mark.parametrize(
    "now, month_calls",
    [
        (datetime(2026, 11, 25, 12, 30, tzinfo=UTC), 3),  # two days ago is this month
        (datetime(2026, 12, 1, 0, 10, tzinfo=UTC), 1),  # two days ago was last month
    ],
)
def test_the_heartbeat_answers_usage_in_each_limited_period(token_a, agent_a, now, month_calls):
    Agent.objects.filter(pk=agent_a.pk).update(
        quotas={"tokens": {"day": 5000, "hour": 1000}, "api_calls": {"month": 9}}
    )
    records = [
        {
            "external_id": agent_a.external_id,
            "model": "gpt-4o",
            "input_tokens": 100,
            "output_tokens": 20,
            "api_calls": 1,
            "at": now.isoformat(),
        },
        {
            "external_id": agent_a.external_id,
            "model": "gpt-4o",
            "input_tokens": 400,
            "api_calls": 2,
            "at": (now - timedelta(days=2)).isoformat(),
        },
    ]
    with time_machine.travel(now, tick=False):
        assert post(token_a, "/usage", {"records": records}).status_code == 200
        body = post(token_a, f"/agents/{agent_a.external_id}/heartbeat", {"state": "running"}).json()
    assert body["quotas"] == {"tokens": {"day": 5000, "hour": 1000}, "api_calls": {"month": 9}}
    assert body["usage"] == {"tokens": {"day": 120, "hour": 120}, "api_calls": {"month": month_calls}}
