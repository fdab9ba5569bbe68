"""WebSocket routes.

- ``/ws/agent``: agents, authenticated by a tenant API token; no ``Origin`` needed.
- ``/ws/events``: the event protocol (docs/api.md), for programs (API token, ``Origin``
  optional) and pages (session, ``Origin`` required and checked).
- ``/ws/live/<slug>/``: the console's pages, session-authenticated behind the origin check.

Origins are compared exactly, scheme, host and port (``realtime.sockets.origin_allowed``).
"""

from __future__ import annotations

from typing import Any

from django.urls import path

from dashboard.live import LiveConsumer
from ingest.consumers import AgentConsumer
from realtime.consumers import EventsConsumer
from realtime.sessions import socket_auth
from realtime.sockets import OptionalOriginValidator, PageOriginValidator

websocket_urlpatterns: list[Any] = [
    path("ws/agent", AgentConsumer.as_asgi()),
    path("ws/events", OptionalOriginValidator(socket_auth(EventsConsumer.as_asgi()))),
    path("ws/live/<slug:slug>/", PageOriginValidator(socket_auth(LiveConsumer.as_asgi()))),
]
