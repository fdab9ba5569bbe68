"""The Python API's ``WebSocketGateway`` (docs/python-api.md), over the console's hub.

``handle_connection`` speaks the protocol of ``/ws/events`` (``realtime.consumers``) on a
websocket object of the Starlette/FastAPI shape (``accept()``, ``receive_text()``,
``send_text()``, ``close(code)``): the same consumer runs behind a small adapter, so both
doors behave alike. The endpoint that calls it has authenticated the
caller and vouches for ``tenant_id``. ``broadcast_event`` publishes through the hub to every
process's sockets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from asgiref.sync import sync_to_async

from core.errors import ErrorCode, InterfaceError
from realtime import hub
from realtime.consumers import EventsConsumer
from tenancy.models import Tenant
from tenancy.selectors import tenant_by_ref

log = logging.getLogger(__name__)


class WebSocketLike(Protocol):
    async def accept(self) -> Any: ...

    async def receive_text(self) -> str: ...

    async def send_text(self, data: str) -> Any: ...

    async def close(self, code: int = 1000) -> Any: ...


def _find_tenant(ref: str | int) -> Tenant:
    tenant = tenant_by_ref(ref)
    if tenant is None:
        raise InterfaceError(ErrorCode.TENANT_NOT_FOUND, f"No tenant {ref!r}.")
    return tenant


class WebSocketGateway:
    """``await gateway.start()``; ``await gateway.handle_connection(websocket=, connection_id=,
    tenant_id=)`` per socket; ``await gateway.broadcast_event(topic=, event_data=)``.

    ``event_bus`` and ``redis_client`` are accepted for the documented signature; events travel
    through the console's hub (Redis pub/sub, or in-process in the embedded default)."""

    def __init__(self, event_bus: object | None = None, redis_client: object | None = None) -> None:
        self.event_bus = event_bus
        self.redis_client = redis_client
        self.connections: dict[str, WebSocketLike] = {}
        self._hub: hub.Hub | None = None

    def tenant_of_agent(self, agent_ref: str) -> int | None:
        """The tenant of the agent an event names, or None when it cannot be told. The
        gateway of the Python API (``l10console.services``) looks agents up in the fleet;
        this one knows no agents, so a broadcast must name its tenant."""
        return None

    async def start(self) -> None:
        self._hub = hub.Hub.current()

    async def stop(self) -> None:
        for websocket in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await websocket.close(code=1001)

    async def handle_connection(self, *, websocket: WebSocketLike, connection_id: str, tenant_id: str | int) -> None:
        """Serve one socket until it closes."""
        if self._hub is None:
            await self.start()
        try:
            tenant = await sync_to_async(_find_tenant)(tenant_id)
        except InterfaceError:
            tenant = None
        scope = {
            "type": "websocket",
            "path": "/ws/events",
            "query_string": f"tenant_id={tenant.pk if tenant else ''}".encode(),
            "headers": [],
            "l10_origin": False,
            # Set only here, never from a request: the endpoint vouches for the tenant.
            "l10_trusted_tenant": tenant.pk if tenant else None,
            "subprotocols": [],
        }
        self.connections[connection_id] = websocket
        opened = False

        async def receive() -> dict[str, Any]:
            nonlocal opened
            if not opened:
                opened = True
                return {"type": "websocket.connect"}
            try:
                return {"type": "websocket.receive", "text": await websocket.receive_text()}
            except Exception:  # the client left (Starlette raises WebSocketDisconnect)
                return {"type": "websocket.disconnect", "code": 1000}

        async def send(message: Mapping[str, Any]) -> None:
            if message["type"] == "websocket.accept":
                await websocket.accept()
            elif message["type"] == "websocket.send":
                await websocket.send_text(message["text"])
            elif message["type"] == "websocket.close":
                await websocket.close(code=message.get("code", 1000))

        try:
            await EventsConsumer.as_asgi()(scope, receive, send)
        finally:
            self.connections.pop(connection_id, None)

    async def broadcast_event(
        self, *, topic: str, event_data: Mapping[str, Any], tenant_id: str | int | None = None
    ) -> int:
        """Publish to the tenant's sockets in every process; returns the event's sequence
        number. The tenant is ``tenant_id``, or ``event_data["tenant_id"]``, or the tenant of
        ``event_data["agent_id"]``."""
        if topic not in hub.TOPICS:
            raise InterfaceError(ErrorCode.WS_BAD_FRAME, f"Unknown topic {topic!r}; topics are {sorted(hub.TOPICS)}.")

        def resolve() -> int:
            ref = tenant_id if tenant_id is not None else event_data.get("tenant_id")
            if ref is not None:
                return int(_find_tenant(ref).pk)
            if event_data.get("agent_id") is None:
                raise InterfaceError(ErrorCode.WS_BAD_FRAME, "Name the tenant: tenant_id= or an agent_id in the data.")
            agent = str(event_data["agent_id"])
            found = self.tenant_of_agent(agent)
            if found is None:
                raise InterfaceError(
                    ErrorCode.WS_BAD_FRAME,
                    f"Cannot tell which tenant agent {agent[:80]!r} belongs to; pass tenant_id= to broadcast_event.",
                )
            return found

        tenant_pk = await sync_to_async(resolve)()
        payload = hub.encode(topic, dict(event_data))
        sent = await sync_to_async(hub.send_payloads, thread_sensitive=False)(tenant_pk, [payload])
        if not sent:
            raise InterfaceError(ErrorCode.SERVICE_UNAVAILABLE, "The event could not be published; try again.")
        return sent[0]
