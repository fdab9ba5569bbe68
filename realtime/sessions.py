"""The session and user of a socket, as channels' ``AuthMiddlewareStack`` provides them,
without its wrapper around ``send``.

Channels' ``SessionMiddleware`` wraps every message a socket sends to save the session
and set its cookie, which only an HTTP response can carry: for a socket it never saves,
but it read the session's state on every frame. Fanning one event out to a thousand
sockets, that was about a sixth of the server's time (docs/performance.md, "Fan-out").
Here the session is the socket's cookie's, read when first asked for; ``send`` is the
server's own.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware
from django.conf import settings

ASGIApp = Any


class SocketSessionMiddleware:
    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = scope["cookies"].get(settings.SESSION_COOKIE_NAME)
        return await self.inner(dict(scope, session=self.store(key)), receive, send)


def socket_auth(inner: ASGIApp) -> ASGIApp:
    """Cookies, the session and the user in the scope (channels' ``AuthMiddlewareStack``)."""
    return CookieMiddleware(SocketSessionMiddleware(AuthMiddleware(inner)))
