"""The sockets' Origin check is exact: scheme, host and port (docs/operations.md, "Sockets
and origins"). A page of another origin on the same machine (another port, another
scheme, another of our host names) gets no socket, cookie or not."""

from __future__ import annotations

import pytest
from django.test import override_settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.conftest import LiveServer, client_for
from tests.realtime.conftest import frame, settings_with, subscribe
from tests.realtime.test_live_pages import opened

PATHS = {"event socket": "/ws/events?tenant_id=acme", "live socket": "/ws/live/acme/?view=overview"}


def another_port(server: LiveServer) -> int:
    """A port that is neither the server's nor one the default allowed origins name."""
    port = server.port + 1
    while port in (80, 443, 8010):
        port += 1
    return port


def socket(server: LiveServer, path: str, origin: str, headers: dict[str, str]) -> ClientConnection:
    return connect(f"{server.ws_url}{path}", additional_headers=headers, origin=Origin(origin), open_timeout=10)


def session(user) -> dict[str, str]:
    return {"Cookie": f"sessionid={client_for(user).cookies['sessionid'].value}"}


def origins_of_others(server: LiveServer) -> dict[str, str]:
    return {
        "another port": f"http://127.0.0.1:{another_port(server)}",
        "another scheme": f"https://127.0.0.1:{server.port}",
        # localhost is one of L10_ALLOWED_HOSTS, but not the host this socket was opened on.
        "another host": f"http://localhost:{server.port}",
    }


@pytest.mark.parametrize("which", ["another port", "another scheme", "another host"])
@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_a_page_of_another_origin_on_the_same_machine_gets_no_socket(server, tenant_a, viewer_a, path, which):
    with pytest.raises(InvalidStatus) as refused:
        socket(server, path, origins_of_others(server)[which], session(viewer_a))
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("which", ["another port", "another scheme", "another host"])
def test_a_token_socket_that_sends_another_origin_is_refused_too(server, tenant_a, token_a, which):
    with pytest.raises(InvalidStatus) as refused:
        socket(server, PATHS["event socket"], origins_of_others(server)[which], {"Authorization": f"Bearer {token_a}"})
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_the_origin_of_the_address_the_socket_was_opened_on_is_accepted(server, tenant_a, viewer_a, path):
    with socket(server, path, server.url, session(viewer_a)) as ws:
        if "events" in path:
            subscribe(ws, "agent.state.changed")
        else:
            opened(ws)


def test_an_origin_of_l10_allowed_origins_is_accepted_exactly(server, tenant_a, viewer_a):
    # Say the console's pages are served at https://console.example.com by a proxy that
    # passes this server's own address on as the Host.
    with override_settings(L10=settings_with(L10_ALLOWED_ORIGINS="https://console.example.com")):
        with socket(server, PATHS["live socket"], "https://console.example.com", session(viewer_a)) as ws:
            opened(ws)
        with socket(server, PATHS["event socket"], "https://console.example.com:443", session(viewer_a)) as ws:
            subscribe(ws, "agent.state.changed")
        for near_miss in ("http://console.example.com", "https://console.example.com:8443", "https://example.com"):
            with pytest.raises(InvalidStatus) as refused:
                socket(server, PATHS["live socket"], near_miss, session(viewer_a))
            assert refused.value.response.status_code == 403, near_miss


def test_behind_a_tls_proxy_the_https_origin_is_the_sockets_own(server, tenant_a, viewer_a):
    https = f"https://127.0.0.1:{server.port}"
    proxied = {**session(viewer_a), "X-Forwarded-Proto": "https"}
    with socket(server, PATHS["live socket"], https, proxied) as ws:
        opened(ws)
    # And then the plain http page is not ours.
    with pytest.raises(InvalidStatus):
        socket(server, PATHS["live socket"], server.url, proxied)


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1:notaport", "file://"])
def test_an_origin_that_names_no_site_is_refused(server, tenant_a, viewer_a, origin):
    with pytest.raises(InvalidStatus):
        socket(server, PATHS["live socket"], origin, session(viewer_a))


def test_a_program_without_an_origin_still_needs_a_token(server, tenant_a, viewer_a, token_a):
    with connect(f"{server.ws_url}{PATHS['event socket']}", additional_headers=session(viewer_a)) as ws:
        assert frame(ws)["code"] == "E10201"
    with connect(
        f"{server.ws_url}{PATHS['event socket']}", additional_headers={"Authorization": f"Bearer {token_a}"}
    ) as ws:
        subscribe(ws, "agent.state.changed")
