"""WebSocket routes. The agent socket authenticates by token and needs no Origin; browser
sockets (live pages) are session-authenticated behind the origin check."""

from __future__ import annotations

from typing import Any

from django.urls import path

from fleet.consumers import AgentConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/agent", AgentConsumer.as_asgi()),
]
