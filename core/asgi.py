"""Framework-free ASGI wrappers: a request-body limit and lifespan hooks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: Django, Channels and uvicorn each spell these types differently.
ASGIApp = Callable[..., Awaitable[None]]


class BodyLimit:
    """Read each HTTP body whole on the event loop, refusing it past ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused without reading a byte. A body
    without one (chunked) is read only up to the limit, then refused. A client that goes
    away before its body is in reaches no view: the app would otherwise run on half a
    body. The app gets the body as one message with its ``Content-Length``, as a WSGI
    application needs (it reads that many bytes, and none without it). ``error_body`` is
    the JSON sent with the 413.
    """

    def __init__(self, app: ASGIApp, *, limit: int, error_body: dict[str, Any]) -> None:
        self.app = app
        self.limit = limit
        self.error = json.dumps(error_body).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if declared is None:
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"transfer-encoding"]
            headers.append((b"content-length", str(len(body)).encode()))
            scope = {**scope, "headers": headers}
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.error)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.error})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Lifespan:
    """Answer ASGI lifespan events, running ``startup``/``shutdown`` callables."""

    def __init__(
        self, app: ASGIApp, *, startup: Callable[[], None], shutdown: Callable[[], Awaitable[None] | None]
    ) -> None:
        self.app = app
        self.startup = startup
        self.shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as exc:  # report, so the server refuses to start
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                pending = self.shutdown()
                if pending is not None:
                    await pending
                await send({"type": "lifespan.shutdown.complete"})
                return
