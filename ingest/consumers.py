"""The agent socket, ``/ws/agent?external_id=...``, authenticated by a tenant API token.

Control changes reach it through the process's hub (``realtime.hub``): a service
publishes ``control.action`` after commit; the socket then reads the committed control and
sends it, so an agent never sees a change that was rolled back or arrives out of order.
Agents without a socket learn it from their next heartbeat.

No ``Origin`` is required: the token, not a cookie, authenticates, so a hostile page
cannot ride on a browser's session (docs/architecture.md, "Sockets").

Frames, all JSON:
- server → agent ``{"type": "control", "desired_state", "version", "quotas", "usage", ...}``
  on connect and whenever the control changes;
- server → agent ``{"type": "approval", "approval_id", "key", "state", "approved",
  "decided_by", "comment", "decided_at", ...}`` when one of its approval requests is
  decided (approved, rejected, or expired by its ``on_timeout``);
- agent → server ``{"type": "state", "state": "paused"}``, answered ``{"type": "ack", ...}``;
- agent → server ``{"type": "ping"}``, answered ``{"type": "pong"}``;
- server → agent ``{"type": "error", "code", "message"}`` for a bad frame (the socket
  stays open), or before closing with 4401 (bad, revoked or expired token), 4403 (a token
  without the ``ingest`` scope), 4404 (unknown agent). When its token is revoked or expires
  while it is open: ``{"type": "error", "code": "E10205", ...}``, then 4401.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async

from core import inputs
from core.errors import ErrorCode, InterfaceError
from fleet import services
from fleet.models import Agent
from ingest.control import AgentControl
from realtime.hub import HubEvent
from realtime.sockets import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, HubSocket, Refused, bearer, query_param
from tenancy.models import ApiToken, Scope
from tenancy.services import token_authenticate
from tenancy.signals import api_token_principal

log = logging.getLogger(__name__)

REPORTABLE_STATES = {"starting", "running", "paused", "stopped", "error"}
CLOSE_UNKNOWN_AGENT = 4404
# How a refused connect closes; anything else about the token is 4401.
REFUSAL_CLOSE = {ErrorCode.INGEST_UNKNOWN_AGENT: CLOSE_UNKNOWN_AGENT, ErrorCode.TOKEN_SCOPE_MISSING: CLOSE_FORBIDDEN}


@database_sync_to_async
def _authenticate(plain: str, external_id: str) -> tuple[Agent, ApiToken]:
    if not plain:
        raise InterfaceError(ErrorCode.AUTH_REQUIRED)
    token: ApiToken = token_authenticate(plain, scope=Scope.INGEST)
    # An id outside the documented characters names no agent (and NUL cannot be compared).
    agent = (
        Agent.objects.filter(tenant=token.tenant, external_id=external_id).first()
        if inputs.EXTERNAL_ID.fullmatch(external_id)
        else None
    )
    if agent is None:
        raise InterfaceError(
            ErrorCode.INGEST_UNKNOWN_AGENT, f"No agent {external_id!r} in this tenant; register first."
        )
    return agent, token


@database_sync_to_async
def _control(agent_id: Any) -> dict[str, Any]:
    agent = Agent.objects.get(pk=agent_id)
    return AgentControl.of(agent).as_message()


@database_sync_to_async
def _delivered(agent: Agent, version: int) -> None:
    services.agent_control_delivered(agent_id=agent.pk, tenant_id=agent.tenant_id, version=version)


@database_sync_to_async
def _report(agent: Agent, state: str) -> None:
    services.agent_state_report(agent=agent, state=state)


class AgentConsumer(HubSocket):
    """An agent's socket: fed by the hub with its own ``control.action`` events only."""

    kind = "agent"
    counts_toward_cap = False  # L10_WS_MAX_CONNECTIONS caps people's sockets, not the fleet's
    agent: Agent | None = None
    refreshing = False
    stale = False

    async def open(self) -> int:
        external_id = query_param(self.scope, "external_id")
        try:
            self.agent, token = await _authenticate(bearer(self.scope), external_id)
        except InterfaceError as exc:
            close = REFUSAL_CLOSE.get(exc.code, CLOSE_UNAUTHORIZED)
            await self.send(text_data=json.dumps({"type": "error", "code": str(exc.code), "message": exc.message}))
            await self.close(code=close)
            raise Refused from exc
        self.agent_key = str(self.agent.pk)
        # Revoking the token (or its expiry) closes this socket (realtime.sockets, E10205).
        self.principals, self.access_ends_at = (api_token_principal(token.pk),), token.expires_at
        return int(self.agent.tenant_id)

    async def joined(self, current_seq: int) -> None:
        await self._send_control()

    def deliver(self, event: HubEvent) -> None:
        if event.topic == "approval.decided":  # the decision of one of its requests, at once
            self.put(json.dumps({"type": "approval", **event.data}))
        else:
            self.resync()

    def resync(self) -> None:
        """Read the committed control and send it; changes that arrive meanwhile fold into
        one read, so the agent always ends on the latest version."""
        if self.refreshing:
            self.stale = True
            return
        self.refreshing = True
        asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            while True:
                self.stale = False
                await self._send_control()
                if not self.stale:
                    return
        except Exception:  # its next heartbeat answer still carries the control
            log.warning("could not send agent %s its control", self.agent_key, exc_info=True)
        finally:
            self.refreshing = False

    async def _send_control(self) -> None:
        if self.agent is not None:
            message = await _control(self.agent.pk)
            self.put(json.dumps(message))
            await _delivered(self.agent, message["version"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.agent is None or self.hub is None:
            return
        try:
            content = inputs.loads(text_data) if text_data is not None else None
        except inputs.InputProblem as exc:
            return self._bad_frame(f"Frames must be JSON text: {exc}.")
        kind = content.get("type") if isinstance(content, dict) and isinstance(content.get("type"), str) else None
        allowed = ("type", "state") if kind == "state" else ("type",)
        extra = inputs.unknown_keys(content, allowed) if isinstance(content, dict) else []
        if content is None:
            self._bad_frame("Frames must be JSON text.")
        elif extra:
            self._bad_frame(f"Unknown field(s) {', '.join(extra)} in a {kind} frame.")
        elif kind == "ping":
            self.put('{"type":"pong"}')
        elif kind == "state" and content.get("state") in REPORTABLE_STATES:
            await _report(self.agent, content["state"])
            self.put(json.dumps({"type": "ack", "state": content["state"]}))
        else:
            self._bad_frame("Send {'type': 'state', 'state': <starting|running|paused|stopped|error>} or ping.")

    def _bad_frame(self, message: str) -> None:
        self.put(json.dumps({"type": "error", "code": str(ErrorCode.WS_BAD_FRAME), "message": message}))
