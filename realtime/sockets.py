"""What every hub-fed client socket shares: a bounded outbox, pings, the connection cap.

A socket never receives from the channel layer (no per-socket subscription in Redis): it
registers with its process's hub (``realtime.hub``), which hands it events. Frames go
to a bounded queue drained by one task per socket, so a client that stops reading only
fills its own queue; when it falls ``OUTBOX_LIMIT`` frames behind it is closed with
``CLOSE_TOO_SLOW`` and may reconnect and resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from typing import Any
from urllib.parse import urlparse

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings

from core.errors import ErrorCode, InterfaceError
from core.observability import WEBSOCKETS
from realtime.hub import Hub, HubEvent

log = logging.getLogger(__name__)

# Close codes (4000–4999 are the application's own).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_MISSED_PINGS = 4408
CLOSE_TOO_SLOW = 4409
CLOSE_TRY_LATER = 1013  # the standard "try again later": the process is at its cap
REFUSAL_CLOSE = {ErrorCode.WS_TENANT_FORBIDDEN: CLOSE_FORBIDDEN, ErrorCode.WS_BAD_FRAME: CLOSE_BAD_REQUEST}
OUTBOX_LIMIT = 256
MISSED_PINGS_ALLOWED = 2
PING = '{"type":"ping"}'


def query_param(scope: dict[str, Any], name: str) -> str:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name) or [""]
    return values[0]


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin1"))
    return None


def bearer(scope: dict[str, Any]) -> str:
    value = header(scope, b"authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Refused(Exception):
    """Raised by ``open()`` after it has sent its own refusal."""


class OptionalOriginValidator(OriginValidator):
    """Like ``AllowedHostsOriginValidator``, but a socket without an ``Origin`` header is let
    through marked ``scope["l10_origin"] = False``: only a program sends none, and such a
    socket must then authenticate with a token, never with a session cookie (docs/architecture.md,
    "Sockets")."""

    def __init__(self, application: Any) -> None:
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = header(scope, b"origin")
        if origin is None:
            return await self.application({**scope, "l10_origin": False}, receive, send)
        if not self.valid_origin(urlparse(origin)):
            # The same refusal as OriginValidator: the handshake fails with 403.
            return await super().__call__(scope, receive, send)
        return await self.application({**scope, "l10_origin": True}, receive, send)


class HubSocket(AsyncWebsocketConsumer):
    """A client socket fed by the hub. Subclasses authenticate in ``open()`` and return the
    tenant id, and choose what to send in ``deliver()``."""

    kind = "client"
    counts_toward_cap = True
    tenant_id: int | None = None
    agent_key: str | None = None  # set: only this agent's control.action events
    hub: Hub | None = None
    outbox: deque[str]
    missed_pings = 0
    closing = False
    ping_slot = 0  # which second of the ping interval this socket is pinged in

    # --- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        await self.accept()
        self.outbox = deque()
        self._wake = asyncio.Event()
        self.ping_slot = secrets.randbelow(1 << 30)
        self._sender: asyncio.Task[None] | None = None
        hub = Hub.current()
        # Sockets still authenticating hold a place too, so a burst cannot overshoot the cap.
        if self.counts_toward_cap and len(hub.sockets) + hub.opening >= settings.L10.ws_max_connections:
            await self.refuse(
                InterfaceError(
                    ErrorCode.WS_TOO_MANY_CONNECTIONS,
                    f"This server holds its maximum of {settings.L10.ws_max_connections} live connections; "
                    "try again shortly.",
                ),
                CLOSE_TRY_LATER,
            )
            return
        hub.opening += self.counts_toward_cap
        try:
            try:
                tenant_id = await self.open()
            except Refused:
                return
            except InterfaceError as exc:
                await self.refuse(exc, REFUSAL_CLOSE.get(exc.code, CLOSE_UNAUTHORIZED))
                return
            self.tenant_id = tenant_id
            try:
                current = await hub.join(tenant_id, self, agent_id=self.agent_key)
            except Exception as exc:  # the hub's transport failed: say so rather than hang
                log.warning("refused a %s socket: the hub cannot watch tenant %s: %r", self.kind, tenant_id, exc)
                unavailable = InterfaceError(
                    ErrorCode.SERVICE_UNAVAILABLE, "Live updates are unavailable right now; reconnect shortly."
                )
                await self.refuse(unavailable, CLOSE_TRY_LATER)
                return
            self.hub = hub
            if self.counts_toward_cap:
                hub.sockets.add(self)
        finally:
            hub.opening -= self.counts_toward_cap
        self._sender = asyncio.get_running_loop().create_task(self._drain())
        WEBSOCKETS.labels(kind=self.kind).inc()
        await self.joined(current)

    async def open(self) -> int:
        """Authenticate and authorize; return the tenant id or raise ``InterfaceError``."""
        raise NotImplementedError

    async def joined(self, current_seq: int) -> None:
        """Called once registered with the hub."""

    async def disconnect(self, code: int) -> None:
        self._detach()
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.cancel()

    def _detach(self) -> None:
        """Stop receiving events (at disconnect, or at once when dropped for being slow)."""
        if self.hub is not None and self.tenant_id is not None:
            self.hub.leave(self.tenant_id, self, agent_id=self.agent_key)
            self.hub.sockets.discard(self)
            WEBSOCKETS.labels(kind=self.kind).dec()
            self.hub = None

    async def refuse(self, exc: InterfaceError, code: int) -> None:
        await self.send(text_data=json.dumps(self.error_frame(exc)))
        await self.close(code=code)

    @staticmethod
    def error_frame(exc: InterfaceError) -> dict[str, Any]:
        return {"type": "error", "code": str(exc.code), "message": exc.message, "recoverable": exc.is_recoverable}

    # --- sending -----------------------------------------------------------------------

    def put(self, text: str) -> None:
        """Queue a frame; a client too far behind is closed (it can resync on reconnect)."""
        if self.closing:
            return
        if len(self.outbox) >= OUTBOX_LIMIT:
            # Detach now: the close below waits for the client to read (the server's
            # flow control) or for the server's keepalive to give up on it.
            self.closing = True
            self.outbox.clear()
            self._detach()
            log.info("dropping a %s socket that fell %d frames behind", self.kind, OUTBOX_LIMIT)
            asyncio.get_running_loop().create_task(self.close(code=CLOSE_TOO_SLOW))
            return
        self.outbox.append(text)
        self._wake.set()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.outbox:
                text = self.outbox.popleft()
                try:
                    await self.send(text_data=text)
                except Exception:  # the client went away; disconnect() follows
                    return

    def deliver(self, event: HubEvent) -> None:
        raise NotImplementedError

    def resync(self) -> None:
        current = self.hub.last_seq.get(self.tenant_id, 0) if self.hub and self.tenant_id is not None else 0
        self.put(json.dumps({"type": "resync", "seq": current}))

    # --- pings -------------------------------------------------------------------------

    def tick(self) -> None:
        """Every ``L10_WS_HEARTBEAT_INTERVAL``: ping, or close a client that ignored two."""
        if self.missed_pings >= MISSED_PINGS_ALLOWED:
            if not self.closing:
                self.closing = True
                asyncio.get_running_loop().create_task(self.close(code=CLOSE_MISSED_PINGS))
            return
        self.missed_pings += 1
        self.put(PING)

    def pong(self) -> None:
        self.missed_pings = 0

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        with contextlib.suppress(Exception):
            await super().close(code=code, reason=reason)
