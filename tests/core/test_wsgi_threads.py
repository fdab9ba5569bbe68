"""core.asgi.WsgiThreads: a WSGI app on a pool of threads, one hop each way."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest

from core.asgi import WsgiThreads

Message = MutableMapping[str, Any]
SCOPE = {
    "type": "http",
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/echo",
    "root_path": "",
    "query_string": b"a=1",
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5"), (b"x-trace", b"t-1")],
    "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8000),
}


def serve(app: Callable[..., Any], requests: list[Message], *, on_send: Callable[[Message], None] = lambda m: None):
    """Run one request through WsgiThreads; the messages it sent and the loop's thread."""
    sent: list[Message] = []

    async def main() -> threading.Thread:
        pending = list(requests)

        async def receive() -> Message:
            return pending.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)
            on_send(message)

        await WsgiThreads(app, threads=2)(SCOPE, receive, send)
        return threading.current_thread()

    return sent, asyncio.run(main())


class Closing(list[bytes]):
    """A response body that records where it was closed."""

    closed_on: list[str]

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(chunks)
        self.closed_on = []

    def close(self) -> None:
        self.closed_on.append(threading.current_thread().name)


def test_a_response_is_gathered_on_a_pool_thread_and_sent_in_one_message():
    seen: dict[str, Any] = {}
    body = Closing([b"hel", b"lo ", b"world"])

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Closing:
        seen["thread"] = threading.current_thread().name
        seen["input"] = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        seen["query"], seen["trace"] = environ["QUERY_STRING"], environ["HTTP_X_TRACE"]
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Answer", "42")])
        return body

    sent, loop_thread = serve(
        app,
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cde", "more_body": False},
        ],
    )
    assert sent == [
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"text/plain"), (b"x-answer", b"42")],
        },
        {"type": "http.response.body", "body": b"hello world"},
    ]
    assert seen == {"thread": seen["thread"], "input": b"abcde", "query": "a=1", "trace": "t-1"}
    assert seen["thread"].startswith("http") and seen["thread"] != loop_thread.name
    # Closed where it ran: a Django response's close ends its request on that thread
    # (request_finished gives the thread's database connection back).
    assert body.closed_on == [seen["thread"]]


def test_a_streamed_response_is_sent_chunk_by_chunk_as_the_pool_reads_it():
    first_chunk_sent = threading.Event()
    read_on: list[str] = []

    class Stream:
        streaming = True
        closed = 0

        def __iter__(self) -> Iterator[bytes]:
            read_on.append(threading.current_thread().name)
            yield b"one"
            # Not gathered first: the loop has written the first chunk before the second
            # is read (gathering would wait here until the timeout and fail).
            read_on.append(threading.current_thread().name)
            assert first_chunk_sent.wait(timeout=10), "the first chunk was not sent before the second was read"
            yield b"two"

        def close(self) -> None:
            Stream.closed += 1

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Stream:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Stream()

    def on_send(message: Message) -> None:
        if message.get("body") == b"one":
            first_chunk_sent.set()

    sent, loop_thread = serve(app, [{"type": "http.request", "body": b"12345"}], on_send=on_send)
    assert [m.get("body") for m in sent] == [None, b"one", b"two", b""]
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
    assert read_on and all(name.startswith("http") for name in read_on)
    assert loop_thread.name not in read_on
    assert Stream.closed == 1


def test_a_client_that_leaves_before_its_body_is_in_reaches_no_app():
    called = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        called.append(environ)
        start_response("200 OK", [])
        return [b""]

    sent, _ = serve(app, [{"type": "http.request", "body": b"12", "more_body": True}, {"type": "http.disconnect"}])
    assert called == [] and sent == []


def test_an_app_that_starts_no_response_fails_and_sends_nothing():
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return [b"no status"]

    with pytest.raises(RuntimeError, match="start_response"):
        serve(app, [{"type": "http.request", "body": b"12345"}])


def test_sockets_are_not_served_here():
    async def main() -> None:
        async def receive() -> Message:
            raise AssertionError("nothing is read")

        async def send(message: Message) -> None:
            raise AssertionError("nothing is sent")

        await WsgiThreads(lambda e, s: [], threads=1)({"type": "websocket"}, receive, send)

    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(main())
