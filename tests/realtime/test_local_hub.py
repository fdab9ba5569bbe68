"""The embedded default's hub, fed inside the process: what an agent reports over its
socket reaches the live pages, as it does through Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings
from websockets.sync.client import connect

from tests.conftest import LiveServer, UvicornThread, free_port
from tests.factories import AgentFactory
from tests.realtime.conftest import frame, settings_with
from tests.realtime.test_live_pages import live_socket, opened

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_agents_report_over_its_socket_reaches_a_live_page(viewer_a, tenant_a, token_a):
    # The report is written on asgiref's one thread for database work; an event sent from
    # there once carried that thread's "in use" mark into the page's render, which then
    # refused to run ("Single thread executor already being used, would deadlock").
    agent = AgentFactory.create(tenant=tenant_a, external_id="worker-1")
    with override_settings(L10=settings_with(L10_REDIS_HOST="")):  # no Redis: the in-process hub
        thread = UvicornThread(free_port())
        thread.start()
        try:
            server = LiveServer("127.0.0.1", thread.port)
            with live_socket(server, viewer_a, f"view=agent&agent={agent.pk}") as page:
                opened(page)
                headers = {"Authorization": f"Bearer {token_a}"}
                with connect(f"{server.ws_url}/ws/agent?external_id=worker-1", additional_headers=headers) as sock:
                    assert json.loads(sock.recv(timeout=5))["type"] == "control"
                    sock.send(json.dumps({"type": "state", "state": "paused"}))
                    assert json.loads(sock.recv(timeout=5)) == {"type": "ack", "state": "paused"}
                    seen: list[dict[str, Any]] = []
                    while not any('data-testid="observed-state">Paused<' in f.get("html", "") for f in seen):
                        # Its summary, and a word to read its cards again (dashboard/live.py).
                        seen.append(frame(page, timeout=5))
                        assert seen[-1]["type"] in ("fragments", "refresh"), seen[-1]
        finally:
            thread.stop()
