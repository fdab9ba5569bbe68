"""Heartbeats taken on the event loop and written together (docs/performance.md,
"Heartbeat capacity").

Through Django, one heartbeat cost about 2 ms of a web process's CPU: the request's trip
to an HTTP thread and back, the middleware, the token's statement, the heartbeat's
statement and its commit. Here a valid heartbeat is checked on the event loop with the
very parser and shape the API uses (``core.inputs.loads``, ``ingest.schemas.HeartbeatIn``)
and handed to the process's ``Writer``. Every ``L10_HEARTBEAT_COALESCE_MS`` what has come
in is written by one of its writer threads: each token checked once, each token's
heartbeats counted against its rate limit at once, and all of them recorded in one
transaction with one statement (``fleet.services.agent_heartbeats``). Each heartbeat is
answered after that commit with the same answer as through Django, so nothing
acknowledged is lost with the process, and a state change is stored, published and
visible within one flush.

Anything else goes to Django as before, which answers it with its own codes: another
route, a query string, a body that is not JSON or does not parse or fit the shape, a
heartbeat that names approval requests, a token that is not valid or is over its rate
limit, an agent the tenant does not have, and every heartbeat of a flush that failed (its
transaction rolled back, so nothing of it was stored). The embedded default (SQLite)
always uses Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections
from django.http.request import validate_host
from django.urls import resolve
from django.utils import timezone
from pydantic import ValidationError

from core import inputs, ratelimit
from core.asgi import ASGIApp, Message, Receive, Scope, Send
from core.errors import InterfaceError
from core.inputs import EXTERNAL_ID
from core.observability import HEARTBEAT_FLUSH_SIZE, INGEST_RECORDS, REQUEST_DURATION
from core.tokens import looks_like_token
from fleet import services as fleet_services
from fleet.sql import Beat
from ingest.control import heartbeat_answer
from ingest.schemas import HeartbeatIn
from tenancy.models import ApiToken
from tenancy.models import Scope as TokenScope
from tenancy.services import token_authenticate

log = logging.getLogger(__name__)

HEARTBEAT_PATH = re.compile(r"/api/v1/ingest/agents/([^/]+)/heartbeat")
MAX_BATCH = 1000  # heartbeats per statement; more wait for the next flush


@dataclass(eq=False)
class Taken:
    """A heartbeat waiting for its flush. Its ``answer`` is set on its event loop: the
    body to send, or None for "Django answers"."""

    token: str
    external_id: str
    payload: HeartbeatIn
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[bytes | None]
    arrived: float = 0.0  # time.monotonic() when handed to the writer


class Writer:
    """The heartbeat writer of one process: a collector thread gathers what comes in during
    the window and hands it to one of ``writers`` writer threads, each writing on its own
    connection, so one flush's round trips (the statement, the commit, the events) do not
    hold up the next. While every writer is busy the next batch grows; the heartbeats of an
    agent whose earlier one is still being written wait for it, so an agent's heartbeats
    are stored in the order they came."""

    def __init__(self, writers: int = 2) -> None:
        self.inbox: queue.SimpleQueue[Taken] = queue.SimpleQueue()
        self.writers = writers
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.free = threading.Semaphore(writers)
        self.writing: set[tuple[str, str]] = set()  # agents of the batches being written
        self.pool: ThreadPoolExecutor | None = None

    def put(self, taken: Taken) -> None:
        taken.arrived = time.monotonic()
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.pool = ThreadPoolExecutor(self.writers, thread_name_prefix="heartbeat-writer")
                    self.thread = threading.Thread(target=self._collect, name="heartbeat-collector", daemon=True)
                    self.thread.start()
        self.inbox.put(taken)

    def _collect(self) -> None:
        carried: list[Taken] = []
        while True:
            if not carried:
                carried.append(self.inbox.get())
            # The window runs from the oldest heartbeat's arrival: what waited through the
            # last flush is written at once, not a window later.
            wait = carried[0].arrived + settings.L10.heartbeat_coalesce_ms / 1000 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.free.acquire()
            batch, carried = carried, []
            while len(batch) < MAX_BATCH * 2:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            with self.lock:
                now, carried = _one_per_agent(batch, self.writing)
                self.writing.update(_key(t) for t in now)
            if not now:  # each waits for a batch being written
                self.free.release()
                time.sleep(0.001)
                continue
            assert self.pool is not None  # noqa: S101 - made with the thread
            self.pool.submit(self._write_and_answer, now)

    def _write_and_answer(self, batch: list[Taken]) -> None:
        try:
            answers = self.flush(batch)
        finally:
            with self.lock:
                self.writing.difference_update(_key(t) for t in batch)
            self.free.release()
        # One wake-up per event loop, not one per heartbeat.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bytes | None], bytes | None]]] = {}
        for taken, answer in zip(batch, answers, strict=True):
            by_loop.setdefault(taken.loop, []).append((taken.answer, answer))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, settled)

    def flush(self, batch: Sequence[Taken]) -> list[bytes | None]:
        """Each heartbeat's answer, or None where Django must answer it."""
        HEARTBEAT_FLUSH_SIZE.observe(len(batch))
        try:
            return _write(batch)
        except Exception:
            log.warning("a flush of %d heartbeats failed; Django answers them", len(batch), exc_info=True)
            return [None] * len(batch)
        finally:
            close_old_connections()


def _key(taken: Taken) -> tuple[str, str]:
    return taken.token, taken.external_id


def _one_per_agent(batch: list[Taken], writing: set[tuple[str, str]]) -> tuple[list[Taken], list[Taken]]:
    """At most ``MAX_BATCH`` heartbeats, one per agent (by token and external id) and none
    of an agent being written, for this flush; the rest, in order, for the next."""
    now: list[Taken] = []
    later: list[Taken] = []
    seen: set[tuple[str, str]] = set()
    for taken in batch:
        key = _key(taken)
        if key in seen or key in writing or len(now) >= MAX_BATCH:
            later.append(taken)
        else:
            seen.add(key)
            now.append(taken)
    return now, later


def _write(batch: Sequence[Taken]) -> list[bytes | None]:
    tokens: dict[str, ApiToken | None] = {}
    counts: dict[str, int] = {}
    for taken in batch:
        counts[taken.token] = counts.get(taken.token, 0) + 1
    for plain, count in counts.items():
        try:
            token = token_authenticate(plain, scope=TokenScope.INGEST)
            # Each token's heartbeats counted at once; those past its limit go to Django,
            # which counts them again and refuses them (E10806).
            counts[plain] = ratelimit.admit(f"ingest:{token.pk}", count, limit=settings.L10.ingest_rate_limit)
        except InterfaceError:
            token = None
        tokens[plain] = token
    admitted: list[Taken] = []
    beats: list[Beat] = []
    for taken in batch:
        token = tokens[taken.token]
        if token is not None and counts[taken.token] > 0:
            counts[taken.token] -= 1
            admitted.append(taken)
            p = taken.payload
            beats.append(Beat(token.tenant, taken.external_id, p.state, p.metrics, p.at))
    found = fleet_services.agent_heartbeats(beats) if beats else []
    now = timezone.now()
    answered: dict[int, bytes] = {}
    for taken, beat, heard in zip(admitted, beats, found, strict=True):
        if heard is not None:
            answered[id(taken)] = heartbeat_answer(
                heard, tenant_id=beat.tenant.pk, external_id=beat.external_id, now=now
            )
    INGEST_RECORDS.labels(kind="heartbeat").inc(len(answered))
    return [answered.get(id(taken)) for taken in batch]


WRITER = Writer()


class HeartbeatPath:
    """The ASGI app in front of Django's: takes heartbeats as the module says, hands the
    rest (and any heartbeat it will not take) to ``app`` with its body as it came. Its
    bodies arrive whole in one message (``core.asgi.BodyLimit`` is in front of it)."""

    def __init__(self, app: ASGIApp, *, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._route: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("query_string")
            or not settings.L10.heartbeat_coalesce_ms
        ):
            await self.app(scope, receive, send)
            return
        found = HEARTBEAT_PATH.fullmatch(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        message = await receive()
        taken = self._take(scope, found.group(1), message)
        if taken is not None:
            WRITER.put(taken)
            body = await taken.answer
            if body is not None:
                headers = self._answer_headers(len(body), secure=_secure(scope))
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                REQUEST_DURATION.labels(method="POST", route=self._route_name(scope), status="2xx").observe(
                    time.perf_counter() - started
                )
                return
        replayed = [message]

        async def replay() -> Message:
            return replayed.pop() if replayed else await receive()

        await self.app(scope, replay, send)

    def _take(self, scope: Scope, external_id: str, message: Message) -> Taken | None:
        if message["type"] != "http.request" or message.get("more_body", False):
            return None
        token = _bearer(scope)
        if token is None or not EXTERNAL_ID.fullmatch(external_id) or not _host_allowed(scope) or not _json(scope):
            return None
        if settings.SECURE_SSL_REDIRECT and not _secure(scope):  # Django redirects it
            return None
        try:
            payload = HeartbeatIn.model_validate(inputs.loads(message.get("body", b""), text=False))
        except (inputs.InputProblem, ValidationError, ValueError, TypeError):
            return None
        if payload.approvals:  # their decisions are read with the answer, by Django
            return None
        loop = asyncio.get_running_loop()
        return Taken(token, external_id, payload, loop, loop.create_future())

    def _answer_headers(self, length: int, *, secure: bool) -> list[tuple[bytes, bytes]]:
        if self._headers is None:
            self._headers = _security_headers()
        headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(length).encode())]
        headers += self._headers
        if secure and settings.SECURE_HSTS_SECONDS:
            headers.append((b"strict-transport-security", _hsts().encode()))
        return headers

    def _route_name(self, scope: Scope) -> str:
        if self._route is None:
            self._route = resolve(scope["path"]).view_name
        return self._route


def _settle(settled: list[tuple[asyncio.Future[bytes | None], bytes | None]]) -> None:
    for future, value in settled:
        if not future.done():  # its client may have gone, and its task with it
            future.set_result(value)


def _bearer(scope: Scope) -> str | None:
    """The token of ``Authorization: Bearer <token>``, as the API's bearer reads it, if it
    looks like a tenant token; else None (Django answers)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and looks_like_token(token):
                return token
            return None
    return None


def _json(scope: Scope) -> bool:
    """The media type the API's parser takes, exactly (anything else: Django refuses it)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip() == b"application/json"
    return False


def _secure(scope: Scope) -> bool:
    """As ``HttpRequest.is_secure``: the scheme, or the proxy's header Django trusts."""
    if scope.get("scheme") == "https":
        return True
    if settings.SECURE_PROXY_SSL_HEADER:
        header, value = settings.SECURE_PROXY_SSL_HEADER
        name = header.removeprefix("HTTP_").lower().replace("_", "-").encode()
        for key, given in scope.get("headers", ()):
            if key == name:
                return given.decode("latin-1").split(",")[0].strip() == value
    return False


def _hsts() -> str:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value


def _host_allowed(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1").rsplit(":", 1)[0] if not value.startswith(b"[") else value.decode("latin-1")
            return validate_host(host.lower(), settings.ALLOWED_HOSTS)
    return False


def _security_headers() -> list[tuple[bytes, bytes]]:
    """The headers Django's middleware puts on the API's answers (SecurityMiddleware,
    XFrameOptionsMiddleware), for the answers given here."""
    headers = [(b"x-frame-options", b"DENY"), (b"vary", b"Cookie")]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        headers.append((b"referrer-policy", str(settings.SECURE_REFERRER_POLICY).encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", str(settings.SECURE_CROSS_ORIGIN_OPENER_POLICY).encode()))
    return headers
