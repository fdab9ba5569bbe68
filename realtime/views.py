"""The sockets' addresses over plain HTTP (they are reversed by name for the pages)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def websocket_only(request: HttpRequest, **kwargs: object) -> HttpResponse:
    """A socket's address opened over plain HTTP: 426, with the upgrade it needs."""
    return HttpResponse(
        "This address is a WebSocket.", status=426, content_type="text/plain", headers={"Upgrade": "websocket"}
    )
