"""A socket's session and user come from its cookie; its frames go straight to the server."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync

from realtime.sessions import socket_auth
from tests.conftest import client_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _open(cookie: str | None) -> tuple[dict[str, Any], Any]:
    seen: dict[str, Any] = {}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["scope"], seen["send"] = scope, send
        seen["user"] = scope["user"]._wrapped  # resolved by the stack before the consumer runs

    async def server_send(message: dict[str, Any]) -> None:
        return None

    headers = [(b"cookie", cookie.encode())] if cookie else []
    async_to_sync(socket_auth(inner))({"type": "websocket", "headers": headers}, None, server_send)
    return seen, server_send


def test_a_socket_has_its_cookies_session_and_user_and_the_servers_own_send(viewer_a):
    client = client_for(viewer_a)
    key = client.session.session_key
    seen, server_send = _open(f"sessionid={key}")
    assert seen["send"] is server_send  # nothing wraps the frames a socket sends
    assert seen["scope"]["session"].session_key == key
    assert seen["user"].pk == viewer_a.pk


def test_no_cookie_or_an_unknown_one_is_anonymous():
    for cookie in (None, "sessionid=" + "x" * 32):
        seen, _ = _open(cookie)
        assert not seen["user"].is_authenticated
