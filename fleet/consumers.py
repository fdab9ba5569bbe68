"""The agent socket, ``/ws/agent?external_id=...``, authenticated by a tenant API token.

No ``Origin`` is required: the token, not a cookie, authenticates, so a hostile page
cannot ride on a browser's session (NOTES.md).

Frames, all JSON:
- server → agent ``{"type": "control", "desired_state", "version", "quotas", "usage", ...}``
  on connect and whenever the control changes;
- agent → server ``{"type": "state", "state": "paused"}``, answered ``{"type": "ack", ...}``;
- agent → server ``{"type": "ping"}``, answered ``{"type": "pong"}``;
- server → agent ``{"type": "error", "code", "message"}`` for a bad frame (the socket
  stays open), or before closing with 4401 (bad token), 4404 (unknown agent).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from fleet import services
from fleet.models import Agent, ApiToken
from fleet.push import agent_group
from l10console.errors import ErrorCode, InterfaceError
from l10console.observability import WEBSOCKETS

log = logging.getLogger(__name__)

REPORTABLE_STATES = {"starting", "running", "paused", "stopped", "error"}
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_AGENT = 4404


def _bearer(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


@database_sync_to_async
def _authenticate(plain: str, external_id: str) -> Agent:
    if not plain:
        raise InterfaceError(ErrorCode.AUTH_REQUIRED)
    token: ApiToken = services.token_authenticate(plain)
    agent = Agent.objects.filter(tenant=token.tenant, external_id=external_id).first()
    if agent is None:
        raise InterfaceError(
            ErrorCode.INGEST_UNKNOWN_AGENT, f"No agent {external_id!r} in this tenant; register first."
        )
    return agent


@database_sync_to_async
def _control(agent_id: Any) -> dict[str, Any]:
    agent = Agent.objects.get(pk=agent_id)
    return services.AgentControl.of(agent).as_message()


@database_sync_to_async
def _report(agent: Agent, state: str) -> None:
    services.agent_state_report(agent=agent, state=state)


class AgentConsumer(AsyncJsonWebsocketConsumer):
    agent: Agent | None = None
    group: str | None = None
    counted = False  # in l10_websocket_connections: accepted and authenticated

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        external_id = (query.get("external_id") or [""])[0]
        await self.accept()
        try:
            self.agent = await _authenticate(_bearer(self.scope), external_id)
        except InterfaceError as exc:
            await self.send_json({"type": "error", "code": str(exc.code), "message": exc.message})
            unknown = exc.code == ErrorCode.INGEST_UNKNOWN_AGENT
            await self.close(code=CLOSE_UNKNOWN_AGENT if unknown else CLOSE_UNAUTHORIZED)
            return
        self.group = agent_group(self.agent.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        WEBSOCKETS.labels(kind="agent").inc()
        self.counted = True
        await self.send_json(await _control(self.agent.pk))

    async def disconnect(self, code: int) -> None:
        if self.counted:
            WEBSOCKETS.labels(kind="agent").dec()
            self.counted = False
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.agent is None:
            return
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "state" and content.get("state") in REPORTABLE_STATES:
            await _report(self.agent, content["state"])
            await self.send_json({"type": "ack", "state": content["state"]})
        else:
            await self._bad_frame("Send {'type': 'state', 'state': <starting|running|paused|stopped|error>} or ping.")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        try:
            await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)
        except ValueError:
            await self._bad_frame("Frames must be JSON text.")

    async def _bad_frame(self, message: str) -> None:
        await self.send_json({"type": "error", "code": str(ErrorCode.WS_BAD_FRAME), "message": message})

    async def control_changed(self, event: dict[str, Any]) -> None:
        if self.agent is not None:
            await self.send_json(await _control(self.agent.pk))
