"""Telling a connected agent at once that what it must obey has changed.

Every agent socket joins the group ``agent.<id>``. After a change commits, a short
notice goes to that group; the socket reads the committed control from the database and
sends it, so an agent never sees a change that was rolled back or arrives out of order.
Agents without a socket learn it from their next heartbeat.
"""

from __future__ import annotations

import logging
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def agent_group(agent_id: UUID | str) -> str:
    return f"agent.{UUID(str(agent_id)).hex}"


def _send(agent_id: UUID) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(agent_group(agent_id), {"type": "control.changed"})
    except Exception:  # the heartbeat still delivers it; never fail the committed change
        log.warning("could not push control of agent %s; it will learn at its next heartbeat", agent_id, exc_info=True)


def control_changed(agent_id: UUID) -> None:
    """Push the agent's control after the current transaction commits."""
    transaction.on_commit(lambda: _send(agent_id))
