"""What every hub-fed client socket shares: a bounded outbox, pings, the connection cap.

A socket never receives from the channel layer (no per-socket subscription in Redis): it
registers with its process's hub (``realtime.hub``), which hands it events. Frames go
to a bounded queue drained by one task per socket, so a client that stops reading only
fills its own queue; when it falls ``OUTBOX_LIMIT`` frames behind it is closed with
``CLOSE_TOO_SLOW`` and may reconnect and resync.

A socket lives on the grants it authenticated with (``principals``: its token, or its
person's session). It registers them with the hub, which closes it when one is revoked or
signed out in any process (``realtime.hub.revoke``), and it closes itself when its token
expires: an error frame (E10205), then ``CLOSE_UNAUTHORIZED``. After the hub lost its
transport (a revocation may have passed unheard) the socket reads its grants again.

Origins are compared exactly (``origin_allowed``): scheme, host and port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils import timezone

from core.config import DEFAULT_PORTS, make_origin, origin_key
from core.errors import ErrorCode, InterfaceError
from core.observability import WEBSOCKETS
from realtime.hub import Hub, HubEvent
from tenancy.selectors import grant_ended
from tenancy.signals import EXPIRED, REVOKED, SIGNED_OUT, session_principal

log = logging.getLogger(__name__)

# Close codes (4000–4999 are the application's own).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_MISSED_PINGS = 4408
CLOSE_TOO_SLOW = 4409
CLOSE_TRY_LATER = 1013  # the standard "try again later": the process is at its cap
REFUSAL_CLOSE = {
    ErrorCode.WS_TENANT_FORBIDDEN: CLOSE_FORBIDDEN,
    ErrorCode.WS_BAD_FRAME: CLOSE_BAD_REQUEST,
    ErrorCode.TOKEN_SCOPE_MISSING: CLOSE_FORBIDDEN,  # a token without the scope the socket needs
}
OUTBOX_LIMIT = 256
MISSED_PINGS_ALLOWED = 2
PING = '{"type":"ping"}'
# What the error frame (E10205) says when a socket's grant ends, by the reason it ended.
ACCESS_ENDED = {
    REVOKED: "The token this socket authenticated with has been revoked.",
    EXPIRED: "The token this socket authenticated with has expired.",
    SIGNED_OUT: "You signed out; sign in again for live updates.",
}


def query_param(scope: dict[str, Any], name: str) -> str:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name) or [""]
    return values[0]


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin1"))
    return None


def session_principals(scope: dict[str, Any]) -> tuple[str, ...]:
    """The grant of a socket a session cookie authenticated: its person's session, which
    signing out ends (``tenancy.signals.session_principal``)."""
    user = scope.get("user")
    key = getattr(scope.get("session"), "session_key", None)
    if user is None or not user.is_authenticated or not key:
        return ()
    return (session_principal(user.pk, key),)


def bearer(scope: dict[str, Any]) -> str:
    value = header(scope, b"authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@database_sync_to_async
def _grant_ended(principal: str, session_key: str | None) -> str | None:
    return grant_ended(principal, session_key=session_key)


class Refused(Exception):
    """Raised by ``open()`` after it has sent its own refusal."""


def _secure(scope: dict[str, Any]) -> bool:
    """The socket came over TLS: ``wss``, or a proxy says so in the header Django trusts
    for it (``SECURE_PROXY_SSL_HEADER``)."""
    if scope.get("scheme") == "wss":
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy:
        return False
    name, expected = proxy
    value = header(scope, name.removeprefix("HTTP_").replace("_", "-").lower().encode())
    return value is not None and value.split(",", 1)[0].strip() == expected


def request_origin(scope: dict[str, Any]) -> str | None:
    """The origin of the console's own pages at the address this socket was opened on: its
    ``Host`` (one of ``ALLOWED_HOSTS``, or none), https if it came over TLS, and always
    with ``L10_TLS`` (the console then serves pages over https only)."""
    host = header(scope, b"host")
    domain, port = split_domain_port(host or "")
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:  # as Django itself allows in debug
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed):
        return None
    scheme = "https" if settings.L10.tls or _secure(scope) else "http"
    if port and not port.isdigit():
        return None
    return make_origin(scheme, domain, int(port) if port else DEFAULT_PORTS[scheme])


def origin_allowed(origin: str, scope: dict[str, Any]) -> bool:
    """Scheme, host and port all match: one of ``L10_ALLOWED_ORIGINS`` (by default the
    ``L10_ALLOWED_HOSTS`` on the console's port), or the socket's own address, as a
    browser's same-origin rule has it (docs/operations.md, "Sockets and origins")."""
    key = origin_key(origin)
    if key is None:
        return False
    return key in settings.L10.allowed_origins or key == request_origin(scope)


class PageOriginValidator:
    """Lets through only a socket whose ``Origin`` is one of ours (``origin_allowed``),
    marked ``scope["l10_origin"] = True``; any other, or none, fails the handshake with 403.
    For sockets a session cookie authenticates: another site's page must not open one with
    the person's cookie (docs/architecture.md, "Sockets")."""

    optional = False

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = header(scope, b"origin")
        if origin is None and self.optional:
            return await self.application({**scope, "l10_origin": False}, receive, send)
        if origin is None or not origin_allowed(origin, scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application({**scope, "l10_origin": True}, receive, send)


class OptionalOriginValidator(PageOriginValidator):
    """As ``PageOriginValidator``, but a socket without an ``Origin`` header is let through
    marked ``scope["l10_origin"] = False``: only a program sends none, and such a socket
    must then authenticate with a token, never with a session cookie."""

    optional = True


class HubSocket(AsyncWebsocketConsumer):
    """A client socket fed by the hub. Subclasses authenticate in ``open()`` and return the
    tenant id, and choose what to send in ``deliver()``."""

    kind = "client"
    counts_toward_cap = True
    tenant_id: int | None = None
    agent_key: str | None = None  # set: only this agent's control.action events
    # Set by open(): the grants this socket lives on (tenancy.signals' principals), and
    # when the first of them expires (its token's expires_at).
    principals: tuple[str, ...] = ()
    access_ends_at: datetime | None = None
    _access_timer: asyncio.TimerHandle | None = None
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
        if not hub.admit(self):  # revoked while it authenticated
            self.end_access(REVOKED)
            return
        if self.access_ends_at is not None:
            left = (self.access_ends_at - timezone.now()).total_seconds()
            self._access_timer = asyncio.get_running_loop().call_later(max(left, 0), self.end_access, EXPIRED)
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
        if self._access_timer is not None:
            self._access_timer.cancel()
            self._access_timer = None
        if self.hub is not None and self.tenant_id is not None:
            self.hub.leave(self.tenant_id, self, agent_id=self.agent_key)
            self.hub.dismiss(self)
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

    def end_access(self, reason: str) -> None:
        """A grant of this socket ended (revoked, signed out, expired): send nothing more,
        say why (E10205) and close with ``CLOSE_UNAUTHORIZED``. Never blocks."""
        if self.closing:
            return
        self.closing = True
        self.outbox.clear()
        self._detach()
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.cancel()
        asyncio.get_running_loop().create_task(self._close_ended(reason))

    def recheck(self) -> None:
        """Read this socket's grants again (the hub may have missed one ending); close if
        one has ended."""
        if not self.closing and self.principals:
            asyncio.get_running_loop().create_task(self._recheck())

    async def _recheck(self) -> None:
        session_key = getattr(self.scope.get("session"), "session_key", None)
        try:
            for principal in self.principals:
                reason = await _grant_ended(principal, session_key)
                if reason is not None:
                    self.end_access(reason)
                    return
        except Exception:  # the next reconnect, or the next revocation, tries again
            log.warning("could not recheck a %s socket's grants", self.kind, exc_info=True)

    async def _close_ended(self, reason: str) -> None:
        ended = InterfaceError(ErrorCode.WS_ACCESS_ENDED, ACCESS_ENDED.get(reason, ACCESS_ENDED[REVOKED]))
        with contextlib.suppress(Exception):
            # Bounded: a client that stopped reading must not hold its socket open.
            await asyncio.wait_for(self.send(text_data=json.dumps(self.error_frame(ended))), timeout=1)
        await self.close(code=CLOSE_UNAUTHORIZED)

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
