"""WebSocket routes. The agent socket and the live pages arrive with their issues."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
