"""Framework-free ASGI wrappers: a request-body limit, a WSGI app on a pool of threads,
and lifespan hooks."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import build_environ

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


Headers = list[tuple[bytes, bytes]]


class WsgiThreads:
    """A WSGI app served from ``threads`` threads, with one hop to a thread and one back
    per request.

    The body is read whole on the event loop before the app runs (``BodyLimit`` has done
    so already), so a thread never waits for the loop to read it. A response that is not
    streamed is gathered on the thread and written by the loop in one message. A streamed
    one (``streaming``, as Django's ``StreamingHttpResponse`` and ``FileResponse`` say)
    is read a chunk at a time on whichever pool thread is free and written between reads,
    so a static file neither blocks the loop nor is held whole in memory (a streamed
    body must therefore not count on one thread, as a transaction would).

    a2wsgi's middleware, which this replaces (its environ builder is kept), handed every
    response message to the loop and blocked its thread until the loop had taken it:
    three waits per page on the loop's turn. As clients grew, the loop's turn came
    later and the threads idled (docs/performance.md, "Threads per process").
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], *, threads: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"WsgiThreads serves HTTP, not {scope['type']!r}")
        parts: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        environ = build_environ(scope, io.BytesIO(b"".join(parts)))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        status, headers, body, streamed = await loop.run_in_executor(self.executor, context.run, self._call, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if streamed is None:
            await send({"type": "http.response.body", "body": body})
            return
        chunks = iter(streamed)
        try:
            if body:  # written through start_response's write() before the stream
                await send({"type": "http.response.body", "body": body, "more_body": True})
            while (chunk := await loop.run_in_executor(self.executor, next, chunks, None)) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await loop.run_in_executor(self.executor, _close, streamed)

    def _call(self, environ: Mapping[str, Any]) -> tuple[int, Headers, bytes, Iterable[bytes] | None]:
        """On a pool thread: run the app; its status, headers, and body, or the response to
        stream."""
        started: list[tuple[str, list[tuple[str, str]]]] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
            started[:] = [(status, headers)]  # nothing is sent yet: a later call replaces it
            return written.append

        result = self.app(environ, start_response)
        streamed = result if getattr(result, "streaming", False) else None
        if streamed is None:
            try:
                written.extend(result)
            finally:
                _close(result)
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        status, raw_headers = started[0]
        headers = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in raw_headers]
        return int(status.split(" ", 1)[0]), headers, b"".join(written), streamed


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


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
