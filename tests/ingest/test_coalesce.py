"""Heartbeats taken on the event loop and written together (ingest/coalesce.py), under a
real uvicorn on PostgreSQL and Redis: the same answers as through Django, one statement
for many, every refusal still Django's own, and nothing stored twice or lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db.models import Sum
from django.test import override_settings

from core.config import L10Settings
from core.observability import HEARTBEAT_FLUSH_SIZE
from fleet.models import Agent, MetricMinute
from tests.factories import AgentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

METRICS = {"cpu_percent": 12.5, "memory_mb": 512.0, "tokens": 300, "requests": 6, "errors": 1, "latency_p95_ms": 80.0}
# The headers that say what an answer is, as Django's middleware sets them.
COMPARED_HEADERS = ("content-type", "x-frame-options", "x-content-type-options", "referrer-policy",
                    "cross-origin-opener-policy", "strict-transport-security")  # fmt: skip


def coalescing(ms: int) -> Any:
    """The console's settings with ``L10_HEARTBEAT_COALESCE_MS`` at ``ms`` (0: through Django)."""
    environ = {k: v for k, v in L10Settings().environ.items()}
    environ["L10_HEARTBEAT_COALESCE_MS"] = str(ms)
    return override_settings(L10=L10Settings(environ=environ))


def flushes() -> tuple[float, float]:
    """(heartbeats flushed, flushes) so far in this process."""
    found = {s.name: s.value for m in HEARTBEAT_FLUSH_SIZE.collect() for s in m.samples}
    return found["l10_heartbeat_flush_size_sum"], found["l10_heartbeat_flush_size_count"]


def beat(server: Any, token: str, external_id: str, body: dict[str, Any] | bytes, **kw: Any) -> httpx.Response:
    """A heartbeat; ``body`` as JSON, or as the bytes given (application/json)."""
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(
        f"{server.url}/api/v1/ingest/agents/{external_id}/heartbeat",
        **sent,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **kw.pop("headers", {})},
        timeout=10,
        **kw,
    )


def samples(agent: Agent) -> int:
    return MetricMinute.objects.filter(agent=agent).aggregate(n=Sum("samples"))["n"] or 0


def test_the_answer_is_the_one_django_gives(asgi_server, token_a, tenant_a):
    agent = AgentFactory.create(tenant=tenant_a, external_id="w-1", desired_state="paused", pause_mode="now", version=4,
                         quotas={"tokens": {"day": 1000}, "cost_usd": {"month": 500}},
                         pause_until=datetime.now(UTC).replace(microsecond=123456) + timedelta(hours=1))  # fmt: skip
    sent = {"state": "running", "metrics": METRICS}
    before = flushes()
    with coalescing(0):
        through_django = beat(asgi_server, token_a, "w-1", sent)
    assert flushes() == before  # Django answered it
    taken = beat(asgi_server, token_a, "w-1", sent)
    assert flushes()[1] == before[1] + 1  # one flush wrote it
    assert taken.status_code == through_django.status_code == 200
    assert taken.json() == through_django.json()
    assert taken.json()["desired_state"] == "paused" and taken.json()["pause_until"]
    assert taken.json()["usage"] == {"tokens": {"day": 0}, "cost_usd": {"month": 0}}
    for name in COMPARED_HEADERS:
        assert taken.headers.get(name) == through_django.headers.get(name), name
    agent.refresh_from_db()
    assert agent.observed_state == "running" and agent.delivered_version == 4
    assert agent.cpu_percent == 12.5 and agent.tokens_per_min == 300 / (settings.L10.agent_heartbeat_interval / 60)
    assert samples(agent) == 2


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("w-1", {"state": "running"}, {"Authorization": "Bearer l10_nothing0_" + "x" * 30}),
        ("w-1", {"state": "running"}, {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("w-1", {"state": "running"}, {"Content-Type": "text/plain"}),
        ("nobody", {"state": "running"}, {}),
        ("bad%20id", {"state": "running"}, {}),
        ("w-1", {"state": "dancing"}, {}),
        ("w-1", {"state": "running", "extra": 1}, {}),
        ("w-1", {"state": "running", "metrics": {"cpu_percent": "5"}}, {}),
        ("w-1", b'{"state": "running", "metrics": {"cpu_percent": Infinity}}', {}),
        ("w-1", b'{"state": "running", "metrics": {"cpu_percent": 1e999}}', {}),
        ("w-1", b'{"state": "running"', {}),
        ("w-1", b'["running"]', {}),
        ("w-1", {"state": "running\u0007"}, {}),
        ("w-1", {"state": "running", "at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, {}),
        ("w-1", {"state": "running", "at": "2020-01-01T00:00:00+00:00"}, {}),
        ("w-1", {"state": "running", "at": "2026-01-01T00:00:00"}, {}),
    ],
)
def test_what_it_does_not_take_django_refuses_with_its_code(asgi_server, token_a, tenant_a, path, body, headers):
    AgentFactory.create(tenant=tenant_a, external_id="w-1")
    refused = beat(asgi_server, token_a, path, body, headers=headers)
    with coalescing(0):
        again = beat(asgi_server, token_a, path, body, headers=headers)
    assert refused.status_code == again.status_code, refused.text
    assert refused.status_code in (400, 401, 404, 413, 415, 422), refused.text
    assert refused.json()["error"]["code"] == again.json()["error"]["code"]
    assert refused.json()["error"]["code"].startswith("E10")
    assert MetricMinute.objects.count() == 0
    assert Agent.objects.get(external_id="w-1").last_heartbeat_at is None


def test_a_token_of_another_kind_or_scope_is_refused(asgi_server, tenant_a):
    from tenancy import services

    AgentFactory.create(tenant=tenant_a, external_id="w-1")
    _, read_only = services.token_create(tenant=tenant_a, name="reader", created_by=None, scopes=["read"])
    refused = beat(asgi_server, read_only, "w-1", {"state": "running"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "E10008"
    assert Agent.objects.get(external_id="w-1").last_heartbeat_at is None


def test_many_at_once_are_written_together_each_once(asgi_server, token_a, tenant_a):
    agents = [AgentFactory.create(tenant=tenant_a, external_id=f"w-{i}") for i in range(40)]
    before = flushes()

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=asgi_server.url, timeout=20,
                                     headers={"Authorization": f"Bearer {token_a}"}) as client:  # fmt: skip
            # Every agent twice: an agent's second heartbeat waits for a later flush.
            sends = [
                client.post(f"/api/v1/ingest/agents/{a.external_id}/heartbeat",
                            json={"state": "error" if n else "running", "metrics": METRICS})
                for n in range(2) for a in agents
            ]  # fmt: skip
            return await asyncio.gather(*sends)

    answers = asyncio.run(all_at_once())
    assert [r.status_code for r in answers] == [200] * 80
    assert [r.json()["external_id"] for r in answers] == [a.external_id for a in agents] * 2
    heartbeats, count = (now - then for now, then in zip(flushes(), before, strict=True))
    assert heartbeats == 80
    assert count < 80  # written together: fewer statements than heartbeats
    # Both of each agent's heartbeats stored: one statement cannot merge a minute row twice,
    # so two of one agent never share a flush.
    for agent in agents:
        assert samples(agent) == 2
    assert Agent.objects.filter(tenant=tenant_a, last_heartbeat_at__isnull=True).count() == 0


def test_a_state_change_is_stored_and_published_before_the_answer(asgi_server, token_a, tenant_a):
    from realtime import hub

    agent = AgentFactory.create(tenant=tenant_a, external_id="w-1", observed_state="running")
    heard: list[dict[str, Any]] = []

    class Listener:
        def deliver(self, event: Any) -> None:
            heard.append({"topic": event.topic, "data": event.data})

        def resync(self) -> None:
            pass

    async def listen_then_beat() -> httpx.Response:
        live = hub.Hub.current()
        listener = Listener()
        await live.join(tenant_a.pk, listener)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    f"{asgi_server.url}/api/v1/ingest/agents/w-1/heartbeat",
                    json={"state": "error"},
                    headers={"Authorization": f"Bearer {token_a}"},
                )
            deadline = asyncio.get_running_loop().time() + 10
            while not any(h["topic"] == "agent.state.changed" for h in heard):
                assert asyncio.get_running_loop().time() < deadline, heard
                await asyncio.sleep(0.01)
            return answer
        finally:
            live.leave(tenant_a.pk, listener)

    answer = asyncio.run(listen_then_beat())
    assert answer.status_code == 200
    agent.refresh_from_db()
    assert agent.observed_state == "error"
    changed = next(h for h in heard if h["topic"] == "agent.state.changed")
    assert changed["data"]["previous_state"] == "running" and changed["data"]["state"] == "error"


def test_over_the_rate_limit_the_rest_are_refused_and_none_is_stored_twice(asgi_server, token_a, tenant_a):
    agents = [AgentFactory.create(tenant=tenant_a, external_id=f"w-{i}") for i in range(12)]
    environ = dict(L10Settings().environ, L10_INGEST_RATE_LIMIT="3")

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=asgi_server.url, timeout=20,
                                     headers={"Authorization": f"Bearer {token_a}"}) as client:  # fmt: skip
            return await asyncio.gather(*(
                client.post(f"/api/v1/ingest/agents/{a.external_id}/heartbeat", json={"state": "running",
                                                                                     "metrics": METRICS})
                for a in agents))  # fmt: skip

    with override_settings(L10=L10Settings(environ=environ)):
        answers = asyncio.run(all_at_once())
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429} and 429 in codes, codes
    assert all(r.json()["error"]["code"] == "E10806" for r in answers if r.status_code == 429)
    stored = {a.external_id: samples(a) for a in agents}
    assert stored == {a.external_id: 1 if r.status_code == 200 else 0 for a, r in zip(agents, answers, strict=True)}


def test_an_agent_that_names_approval_requests_hears_their_decisions(asgi_server, token_a, tenant_a):
    from approvals import services as approvals
    from approvals.services import NewRequest

    agent = AgentFactory.create(tenant=tenant_a, external_id="w-1")
    asked, _ = approvals.request_create(
        agent=agent, new=NewRequest("deploy", "ship it", None, timedelta(minutes=5), "reject", "k1")
    )
    answer = beat(asgi_server, token_a, "w-1", {"state": "running", "approvals": [str(asked.pk)]})
    assert answer.status_code == 200
    assert answer.json()["decisions"] == []  # pending: nothing decided yet, and Django answered
