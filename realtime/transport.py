"""How events travel between processes: the hub's transport (``realtime.hub`` fans them
out to sockets).

- **Redis** (production): one Lua call ``INCR`` s the tenant's sequence number and
  ``PUBLISH`` es ``"<seq> <payload>"`` on the tenant's channel, atomically, so sequence
  numbers arrive in order. Hubs read with ``redis.asyncio`` ``SUBSCRIBE``.
- **Local** (the embedded default): a counter per tenant in this process, delivered to
  every hub of this process with ``call_soon_threadsafe``.

Besides the tenants' channels there is one control channel, which every hub of every
process listens to: it carries what concerns sockets of any tenant, such as the end of a
grant (``realtime.hub.revoke``). Events never travel on it.

Sending is sync and may run on any thread (services, views, Celery tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
import weakref
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, Protocol
from uuid import UUID

from django.conf import settings

log = logging.getLogger(__name__)

TOPICS = frozenset(
    {
        "agent.state.changed",
        "agent.heartbeat",
        "agent.registered",
        "task.completed",
        "agent.events",
        "events.stored",
        "alert.triggered",
        "alert.resolved",
        "alert.acknowledged",
        "alert.updated",
        "control.action",
        "control.delivered",
        "control.batch",
        "costs.spent",
        "approval.requested",
        "approval.updated",
        "approval.decided",
    }
)
SEQ_PREFIX = "l10:hub:seq:"
# One atomic step: the next sequence numbers and the publishes that carry them, one per
# payload (ARGV), numbered in order; returns the first. A batch of heartbeats publishes one
# event per agent: one call, not one per event (docs/performance.md, "Heartbeat capacity").
PUBLISH_LUA = """
local first = redis.call('INCRBY', KEYS[1], #ARGV) - #ARGV + 1
for i, payload in ipairs(ARGV) do
    redis.call('PUBLISH', KEYS[2], (first + i - 1) .. ' ' .. payload)
end
return first
"""
# A tenant's counter never goes back below what a hub has seen (ARGV[1]). Redis that comes
# back without its data (restarted without persistence, a failover to a replica that lagged)
# would number events from 1 again, and sockets and live pages that saw higher numbers would
# take the new events for ones they had (docs/operations.md, "Faults").
AT_LEAST_LUA = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local seen = tonumber(ARGV[1])
if seq < seen then
    redis.call('SET', KEYS[1], seen)
    return seen
end
return seq
"""


def channel(tenant_id: int) -> str:
    # Pub/sub channels are shared by all of a server's databases: name the database, or two
    # deployments (or a deployment and its tests) on one Redis would hear each other.
    return f"l10:hub:{settings.L10.redis_db}:t:{tenant_id}"


def control_channel() -> str:
    return f"l10:hub:{settings.L10.redis_db}:control"


def seq_key(tenant_id: int) -> str:
    return f"{SEQ_PREFIX}{tenant_id}"


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"cannot publish a {type(value).__name__}")


def encode(topic: str, data: Mapping[str, Any]) -> str:
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; topics are {sorted(TOPICS)}")
    return json.dumps({"topic": topic, "data": data}, default=_json_default, separators=(",", ":"))


def send_payloads(tenant_id: int, payloads: list[str]) -> list[int]:
    """Send encoded events now; returns their sequence numbers (empty when it failed)."""
    try:
        if settings.L10.uses_redis:
            return _redis_send(tenant_id, payloads)
        return _local_send(tenant_id, payloads)
    except Exception as exc:  # the change is committed; losing its notice must not undo that
        log.warning("could not publish %d event(s) of tenant %s: %s", len(payloads), tenant_id, exc)
        return []


@cache
def sync_redis(url: str) -> Any:
    import redis

    # Short timeouts: publishing sits on a request's path and must fail fast.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1, health_check_interval=30)


@cache
def _publish_script(url: str) -> Any:
    return sync_redis(url).register_script(PUBLISH_LUA)


def _redis_send(tenant_id: int, payloads: list[str]) -> list[int]:
    url = settings.L10.redis_url
    script = _publish_script(url)
    keys = [seq_key(tenant_id), channel(tenant_id)]
    first = int(script(keys=keys, args=payloads))
    return list(range(first, first + len(payloads)))


_local_lock = threading.Lock()
_local_seq: dict[int, int] = {}
_receivers: weakref.WeakSet[Receiver] = weakref.WeakSet()


class Receiver(Protocol):
    """A hub of this process, as the local transport hands it events."""

    loop: asyncio.AbstractEventLoop

    def dispatch(self, tenant_id: int, seq: int, payload: str) -> None: ...

    def control(self, payload: str) -> None: ...


def receive_locally(receiver: Receiver) -> None:
    """Hand ``receiver`` every event sent inside this process from now on."""
    _receivers.add(receiver)


def stop_receiving(receiver: Receiver) -> None:
    _receivers.discard(receiver)


def _local_send(tenant_id: int, payloads: list[str]) -> list[int]:
    with _local_lock:
        first = _local_seq.get(tenant_id, 0) + 1
        numbered = list(enumerate(payloads, start=first))
        _local_seq[tenant_id] = first + len(payloads) - 1
        hubs = list(_receivers)
    for hub in hubs:
        for seq, payload in numbered:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                # In a context of its own, as an event read from Redis is: the sender's
                # (often asgiref's one database thread, marked "in use") must not follow
                # the event into the renders it starts on the loop.
                hub.loop.call_soon_threadsafe(hub.dispatch, tenant_id, seq, payload, context=contextvars.Context())
    return [seq for seq, _ in numbered]


def send_control(payload: str) -> bool:
    """Send a control message to every hub of every process; False when it could not be
    sent (then this process's hubs get it at least: logged, never raised)."""
    try:
        if settings.L10.uses_redis:
            sync_redis(settings.L10.redis_url).publish(control_channel(), payload)
            return True
    except Exception as exc:
        log.warning("could not publish a control message to the other processes: %s", exc)
        _local_control(payload)
        return False
    _local_control(payload)
    return True


def _local_control(payload: str) -> None:
    with _local_lock:
        hubs = list(_receivers)
    for hub in hubs:
        with contextlib.suppress(RuntimeError):  # its loop has closed
            hub.loop.call_soon_threadsafe(hub.control, payload, context=contextvars.Context())


def local_current(tenant_id: int) -> int:
    with _local_lock:
        return _local_seq.get(tenant_id, 0)


def current_seq(tenant_id: int) -> int | None:
    """The tenant's latest sequence number (sync, for pages); None when it cannot be read."""
    try:
        if settings.L10.uses_redis:
            value = sync_redis(settings.L10.redis_url).get(seq_key(tenant_id))
            return int(value) if value is not None else 0
        return local_current(tenant_id)
    except Exception as exc:
        log.warning("could not read the event sequence of tenant %s: %s", tenant_id, exc)
        return None
