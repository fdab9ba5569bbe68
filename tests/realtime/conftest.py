"""Socket clients for the real-time tests: real sockets to a real uvicorn server."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from websockets.sync.client import ClientConnection, connect

from core.config import L10Settings
from realtime.hub import Hub, _by_loop
from tests.conftest import LiveServer, UvicornThread, client_for, free_port


def settings_with(**env: str) -> L10Settings:
    """The suite's settings (same database and Redis) with some ``L10_*`` values changed."""
    return L10Settings(environ={**os.environ, **env})


@pytest.fixture
def fast_pings() -> Iterator[None]:
    with override_settings(L10=settings_with(L10_WS_HEARTBEAT_INTERVAL="1")):
        yield


@pytest.fixture
def server(transactional_db: None) -> Iterator[LiveServer]:
    """uvicorn serving the console, started inside the test's settings (so a test can
    shorten the ping interval or lower the connection cap before it starts)."""
    thread = UvicornThread(free_port())
    thread.start()
    yield LiveServer("127.0.0.1", thread.port)
    thread.stop()


def events_socket(
    server: LiveServer,
    tenant: str,
    *,
    token: str | None = None,
    user: User | None = None,
    origin: str | None = "same",
    **options: Any,
) -> ClientConnection:
    headers: dict[str, str] = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if user is not None:
        headers["Cookie"] = f"sessionid={client_for(user).cookies['sessionid'].value}"
    if origin == "same":
        origin = server.url if user is not None else None
    return connect(
        f"{server.ws_url}/ws/events?tenant_id={tenant}",
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=10,
        **options,
    )


class StalledClient:
    """A client that completes the handshake, subscribes, and then never reads: its
    receive buffer is kept tiny, so the server's sends back up at once."""

    def __init__(self, server: LiveServer, path: str, headers: dict[str, str]) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((server.host, server.port))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {server.host}:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += self.sock.recv(1)
        assert answer.startswith(b"HTTP/1.1 101"), answer

    def send_text(self, text: str) -> None:
        """One masked text frame, as a client must send."""
        data, mask = text.encode(), os.urandom(4)
        head = bytes([0x81])
        if len(data) < 126:
            head += bytes([0x80 | len(data)])
        else:
            head += bytes([0x80 | 126]) + struct.pack("!H", len(data))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        self.sock.close()


def frame(ws: ClientConnection, *, timeout: float = 5.0, skip: tuple[str, ...] = ("ping",)) -> dict[str, Any]:
    """The next frame that is not one of ``skip``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no frame within {timeout} s")
        message = json.loads(ws.recv(timeout=left))
        if message.get("type") not in skip:
            return dict(message)


def subscribe(ws: ClientConnection, *topics: str, **extra: Any) -> dict[str, Any]:
    ws.send(json.dumps({"type": "subscribe", "topics": list(topics), **extra}))
    answer = frame(ws)
    assert answer["type"] == "subscribed", answer
    return answer


def server_hubs() -> list[Hub]:
    return list(_by_loop.values())


def open_sockets() -> int:
    """Client sockets registered with the hubs of this process (the uvicorn threads')."""
    return sum(len(h.sockets) for h in server_hubs())
