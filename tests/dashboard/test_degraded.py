"""Real faults: a killed Redis, a metrics query blocked past its budget, breakers."""

from __future__ import annotations

import psycopg
import pybreaker
import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from core import breakers, tenant_cache
from core.config import L10Settings
from tests.conftest import client_for, wait_for

pytestmark = pytest.mark.django_db


def redis_cache(url: str) -> dict[str, dict[str, object]]:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.3, "SOCKET_TIMEOUT": 0.3},
        }
    }


@pytest.mark.redis
def test_with_redis_dead_every_page_renders_from_the_database_with_a_banner(private_redis, viewer_a, acme_fleet):
    client = client_for(viewer_a)
    agent = acme_fleet[0]
    with override_settings(CACHES=redis_cache(private_redis.url)):
        assert "Cache unavailable" not in client.get("/t/acme/").content.decode()
        private_redis.kill()
        for url in ("/t/acme/", "/t/acme/agents/", f"/t/acme/agents/{agent.pk}/", "/t/acme/?range=24h"):
            response = client.get(url)
            assert response.status_code == 200, url
            page = response.content.decode()
            assert 'data-testid="degraded-banner"' in page, url
            assert "Crawler 1" in page or 'data-testid="total-agents">4<' in page, url
        # Three failures opened the cache breaker: later requests do not even try Redis.
        assert breakers.states()["cache"] == "open"
        with pytest.raises(tenant_cache.CacheUnavailable) as refused:
            tenant_cache.generation(agent.tenant_id)
        assert isinstance(refused.value.__cause__, pybreaker.CircuitBreakerError)  # no wait on Redis


@pytest.fixture
def metrics_table_locked(transactional_db):
    """An ACCESS EXCLUSIVE lock on the minute rows, held from a second connection."""
    params = connection.get_connection_params()
    conn = psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        dbname=params["dbname"],
        user=params.get("user"),
        autocommit=False,
    )
    conn.execute("LOCK TABLE fleet_metricminute IN ACCESS EXCLUSIVE MODE")
    yield conn
    conn.rollback()
    conn.close()


def budget(ms: int) -> L10Settings:
    return L10Settings(environ={"L10_METRICS_QUERY_BUDGET_MS": str(ms)})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_metrics_query_past_its_budget_marks_the_panel_and_the_rest_renders(
    viewer_a, acme_fleet, metrics_table_locked
):
    client = client_for(viewer_a)
    with override_settings(L10=budget(300)):
        response = client.get("/t/acme/?range=1h")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="metrics-unavailable"' in page
    assert "statement timeout" in page  # cancelled at its budget, by PostgreSQL
    assert 'data-testid="total-agents">4<' in page  # tiles and tops are unaffected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_metrics_breaker_opens_after_failures_and_closes_after_a_success(
    viewer_a, acme_fleet, metrics_table_locked, quick_metrics_breaker
):
    client = client_for(viewer_a)
    with override_settings(L10=budget(200)):
        agent = f"/t/acme/agents/{acme_fleet[0].pk}/"
        # Three reads of minute rows (nothing cached: each fails), then the breaker is open.
        for url in ("/t/acme/?range=15m", "/t/acme/?range=1h", f"{agent}?range=1h"):
            assert 'data-testid="metrics-unavailable"' in client.get(url).content.decode()
        assert breakers.states()["metrics"] == "open"
        with CaptureQueriesContext(connection) as queries:
            page = client.get(f"{agent}?range=6h").content.decode()
        assert "failing; retrying shortly" in page
        read = [q["sql"] for q in queries.captured_queries if "fleet_metric" in q["sql"]]
        assert not read, f"an open breaker answers without querying: {read}"
    metrics_table_locked.rollback()  # the lock goes away

    def recovered() -> bool:
        # Once reset_timeout has passed, the next read is let through and closes it.
        client.get(f"{agent}?range=15m")
        return breakers.states()["metrics"] == "closed"

    wait_for(recovered, timeout=5, interval=0.2, what="the metrics breaker to close")
    assert 'data-testid="metrics-unavailable"' not in client.get("/t/acme/?range=15m").content.decode()
