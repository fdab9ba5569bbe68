"""/healthz, /readyz and /metrics, against real services (a private Redis is killed for real)."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from core import breakers, observability
from core.config import L10Settings
from tests.conftest import client_for, wait_for

pytestmark = pytest.mark.django_db

FAMILIES = (
    "l10_http_request_duration_seconds",
    "l10_websocket_connections",
    "l10_ingest_records_total",
    "l10_cache_lookups_total",
    "l10_circuit_breaker_open",
)


def _redis_cache(url: str) -> dict[str, dict[str, object]]:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


def _heartbeat(token: str) -> Any:
    return Client().post(
        "/api/v1/ingest/agents/worker-1/heartbeat",
        json.dumps({"state": "running"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def _scrape() -> str:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def _value(exposition: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


# --- /healthz and /readyz --------------------------------------------------------------


def test_healthz_says_alive_without_asking_any_service(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ready_with_every_check_ok_and_shows_the_breakers(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "cache", "hub"}
    for name, check in body["checks"].items():
        assert check["ok"] is True, name
        assert isinstance(check["ms"], float | int), name
        assert "error" not in check, name
    assert body["breakers"] == {"cache": "closed", "metrics": "closed"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_shows_an_open_breaker(client):
    breakers.cache.open()
    body = client.get("/readyz").json()
    assert body["breakers"]["cache"] == "open"


@pytest.mark.redis
def test_readyz_answers_503_within_the_bound_when_the_cache_is_dead(private_redis, client):
    with override_settings(CACHES=_redis_cache(private_redis.url)):
        assert client.get("/readyz").status_code == 200
        private_redis.kill()
        response = client.get("/readyz")
    assert response.status_code == 503, response.content
    body = response.json()
    # The probe gave up on the dead cache within its bound rather than waiting it out.
    assert body["checks"]["cache"]["ms"] <= observability.CHECK_BUDGET * 1000
    assert body["status"] == "not ready"
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["cache"]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert set(body["breakers"]) == {"cache", "metrics"}


@pytest.mark.redis
def test_readyz_answers_503_when_the_hub_redis_is_dead(private_redis, client):
    hub_on_private = L10Settings(environ={**os.environ, "L10_REDIS_PORT": str(private_redis.port), "L10_REDIS_DB": "0"})
    with override_settings(L10=hub_on_private):
        assert client.get("/readyz").json()["checks"]["hub"] == {
            "ok": True,
            "ms": pytest.approx(0, abs=1000),
            "backend": "redis",
        }
        private_redis.kill()
        response = client.get("/readyz")
    assert response.status_code == 503
    hub = response.json()["checks"]["hub"]
    assert hub["ms"] <= observability.CHECK_BUDGET * 1000
    assert hub["ok"] is False
    assert "Connection" in hub["error"]


# --- /metrics ---------------------------------------------------------------------------


def test_metrics_show_every_family_after_a_request_an_ingest_and_a_page(client, token_a, agent_a, viewer_a):
    before = _scrape()
    heartbeats = _value(before, "l10_ingest_records_total", kind="heartbeat") or 0.0
    assert client.get("/healthz").status_code == 200
    assert _heartbeat(token_a).status_code == 200
    assert client_for(viewer_a).get("/t/acme/agents/").status_code == 200

    after = _scrape()
    for family in FAMILIES:
        assert f"# TYPE {family} " in after, family
    assert _value(after, "l10_http_request_duration_seconds_count", method="GET", route="healthz", status="2xx")
    assert _value(after, "l10_http_request_duration_seconds_count", method="POST", route="api:heartbeat")
    assert _value(after, "l10_http_request_duration_seconds_count", route="dashboard:agents", status="2xx")
    assert _value(after, "l10_ingest_records_total", kind="heartbeat") == heartbeats + 1
    lookups = (_value(after, "l10_cache_lookups_total", result="hit") or 0) + (
        _value(after, "l10_cache_lookups_total", result="miss") or 0
    )
    assert lookups >= 1
    assert _value(after, "l10_circuit_breaker_open", breaker="cache") == 0.0
    assert _value(after, "l10_circuit_breaker_open", breaker="metrics") == 0.0
    assert "process_resident_memory_bytes" in after  # the default collectors come along


def test_metrics_show_an_open_breaker_as_1(client):
    breakers.metrics.open()
    assert _value(_scrape(), "l10_circuit_breaker_open", breaker="metrics") == 1.0


def test_metrics_are_a_404_from_an_address_not_allowed(client):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
    assert client.post("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    with override_settings(L10=L10Settings(environ={"L10_METRICS_ALLOWED": "10.0.0.0/8"})):
        assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404


def test_no_tenant_slug_or_agent_appears_in_the_metrics(token_a, agent_a, viewer_a):
    member = client_for(viewer_a)
    assert member.get("/t/acme/").status_code == 200
    assert member.get("/t/acme/agents/").status_code == 200
    assert member.get(f"/t/acme/agents/{agent_a.pk}/").status_code == 200
    assert _heartbeat(token_a).status_code == 200

    body = _scrape()
    for secret in ("acme", "Acme", "worker-1", str(agent_a.pk)):
        assert secret not in body, secret
    assert 'route="dashboard:agent"' in body


@pytest.mark.django_db(transaction=True)
def test_an_agent_socket_is_counted_while_it_is_open(asgi_server, token_a, agent_a):
    def sockets() -> float:
        response = httpx.get(f"{asgi_server.url}/metrics", timeout=5)
        assert response.status_code == 200
        return _value(response.text, "l10_websocket_connections", kind="agent") or 0.0

    baseline = sockets()
    url = f"{asgi_server.ws_url}/ws/agent?external_id=worker-1"
    with connect(url, additional_headers={"Authorization": f"Bearer {token_a}"}, open_timeout=5) as socket:
        assert json.loads(socket.recv(timeout=5))["type"] == "control"
        wait_for(lambda: sockets() == baseline + 1, timeout=5, what="the socket to be counted")
    wait_for(lambda: sockets() == baseline, timeout=5, what="the closed socket to be uncounted")

    # A socket refused for its token was accepted only to say why: it is never counted.
    with connect(url, additional_headers={"Authorization": "Bearer l10_wrong"}, open_timeout=5) as socket:
        assert json.loads(socket.recv(timeout=5))["type"] == "error"
    assert sockets() == baseline
