"""The hub when its Redis dies and comes back: a private redis-server, really killed."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from django.test import override_settings

from realtime import hub
from tests import services
from tests.conftest import LiveServer, UvicornThread, free_port, wait_for
from tests.realtime.conftest import events_socket, frame, settings_with, subscribe

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def restart(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: services.answers("127.0.0.1", port), timeout=10, what="redis-server to come back")
    return process


def test_sockets_survive_a_redis_outage_and_are_told_to_resync(private_redis, tenant_a, token_a):
    on_private = settings_with(L10_REDIS_PORT=str(private_redis.port), L10_REDIS_DB="0")
    revived = None
    with override_settings(L10=on_private):
        server = UvicornThread(free_port())
        server.start()
        live = LiveServer("127.0.0.1", server.port)
        try:
            with events_socket(live, "acme", token=token_a) as ws:
                subscribe(ws, "task.completed")
                hub.publish(tenant_a.pk, "task.completed", {"n": 1})
                assert frame(ws)["data"] == {"n": 1}

                private_redis.kill()
                # Publishing fails fast and quietly: the change it follows is committed.
                assert hub.send_payloads(tenant_a.pk, [hub.encode("task.completed", {"n": 2})]) == []
                # A page opened meanwhile is accepted; it cannot know yet what it will miss.
                with events_socket(live, "acme", token=token_a) as meanwhile:
                    subscribe(meanwhile, "task.completed")
                    revived = restart(private_redis.port)
                    # Both stayed open; the hub reconnects and tells them events may be lost.
                    assert frame(ws, timeout=15)["type"] == "resync"
                    assert frame(meanwhile, timeout=15)["type"] == "resync"
                    hub.publish(tenant_a.pk, "task.completed", {"n": 3})
                    assert frame(ws)["data"] == {"n": 3}
                    assert frame(meanwhile)["data"] == {"n": 3}
        finally:
            server.stop()
            if revived is not None:
                revived.kill()
                revived.wait(timeout=10)
