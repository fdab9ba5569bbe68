"""The ASGI app under a real uvicorn: body limits before the body is read, pages, API."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.observability import REQUEST_DURATION
from fleet.models import MetricMinute
from tests.conftest import wait_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)

# A minute ago: inside the window a sample may be stamped in.
RECENT = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().encode()


def test_a_declared_oversized_body_is_refused_before_it_is_sent(asgi_server, token_a):
    # Declare 50 MB but send nothing: the answer must come without reading a body.
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/ingest/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer " + token_a.encode() + b"\r\n"
            b"Content-Length: 50000000\r\n\r\n"
        )
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")
    assert "E10803" in head


def test_a_chunked_body_is_cut_off_at_the_limit(asgi_server, token_a, agent_a):
    def chunks():
        yield b'{"samples": ['
        for _ in range(20_000):  # about 2 MB, over the 1 MiB limit
            yield b'{"external_id": "worker-1", "at": "' + RECENT + b'", "cpu_percent": 1.0},' * 2

    response = httpx.post(
        f"{asgi_server.url}/api/v1/ingest/metrics",
        content=chunks(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token_a}"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "E10803"
    assert MetricMinute.objects.count() == 0


def test_a_body_under_the_limit_reaches_the_api_in_chunks_too(asgi_server, token_a, agent_a):
    def chunks():
        yield b'{"samples": [{"external_id": "worker-1", '
        yield b'"at": "' + RECENT + b'", "cpu_percent": 1.0}]}'

    response = httpx.post(
        f"{asgi_server.url}/api/v1/ingest/metrics",
        content=chunks(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token_a}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert MetricMinute.objects.count() == 1


def test_pages_and_static_files_are_served(asgi_server):
    login = httpx.get(f"{asgi_server.url}/login/", timeout=10)
    assert login.status_code == 200
    assert "Sign in" in login.text
    css = httpx.get(f"{asgi_server.url}/static/css/console.css", timeout=10)
    assert css.status_code == 200
    assert "--accent" in css.text
    assert httpx.get(f"{asgi_server.url}/healthz", timeout=10).json() == {"status": "ok"}


def _answered(status: str) -> float:
    """Requests Django answered with this status class so far (this process's registry)."""
    return sum(
        sample.value
        for metric in REQUEST_DURATION.collect()
        for sample in metric.samples
        if sample.name.endswith("_count") and sample.labels["status"] == status
    )


def test_a_client_that_leaves_mid_body_reaches_no_view(asgi_server, token_a, agent_a, tenant_a):
    refused_before = _answered("4xx")
    # The first 19 bytes are a whole, valid heartbeat; the declared length promises more.
    partial = b'{"state": "paused"}'
    with socket.create_connection(("127.0.0.1", asgi_server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/ingest/agents/worker-1/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer " + token_a.encode() + b"\r\n"
            b"Content-Length: 100\r\n\r\n" + partial
        )
        wait_for(asgi_server.handling, timeout=10, what="the server to start on the request")
    # The server has seen the client leave and finished with its request: whatever that
    # request was going to do, it has done.
    wait_for(asgi_server.idle, timeout=10, what="the server to finish with the cut request")
    # And the server still answers.
    other = AgentFactory.create(tenant=tenant_a, external_id="worker-2")
    response = httpx.post(
        f"{asgi_server.url}/api/v1/ingest/agents/worker-2/heartbeat",
        json={"state": "running"},
        headers={"Authorization": f"Bearer {token_a}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    other.refresh_from_db()
    agent_a.refresh_from_db()
    assert other.last_heartbeat_at is not None
    assert agent_a.last_heartbeat_at is None and agent_a.observed_state == "starting"
    assert _answered("4xx") == refused_before  # no view ran on the cut body, not even to refuse it
