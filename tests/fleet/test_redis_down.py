"""A dead Redis, for real: a private redis-server is started for the test and killed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from fleet.models import Agent

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


def _redis_cache(url: str) -> dict[str, dict[str, object]]:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


def _heartbeat(token: str, state: str) -> Any:
    return Client().post(
        "/api/v1/ingest/agents/worker-1/heartbeat",
        json.dumps({"state": state}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_ingest_fails_closed_with_retry_after_when_the_rate_limiter_has_no_redis(private_redis, token_a, agent_a):
    with override_settings(CACHES=_redis_cache(private_redis.url)):
        assert _heartbeat(token_a, "running").status_code == 200
        private_redis.kill()
        response = _heartbeat(token_a, "paused")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "E10902"
    assert response.json()["error"]["recoverable"] is True
    assert response["Retry-After"] == "1"
    # The refused heartbeat changed nothing.
    agent = Agent.objects.get(pk=agent_a.pk)
    assert agent.observed_state == "running"


def test_sign_in_says_it_is_briefly_unavailable_when_redis_is_down(private_redis, admin_a):
    with override_settings(CACHES=_redis_cache(private_redis.url)):
        private_redis.kill()
        response = Client().post("/login/", {"username": "alice", "password": "x"})
    assert response.status_code == 503
    assert "briefly unavailable" in response.content.decode()
