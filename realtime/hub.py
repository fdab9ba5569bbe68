"""Publishing changes and fanning them out to this process's sockets.

``publish(tenant_id, topic, data)`` is called by services, views and tasks; the event goes
out after the current transaction commits, through the transport (``realtime.transport``:
Redis pub/sub in production, this process in the embedded default). Every ASGI process
runs one ``Hub`` per event loop: it holds one subscription per tenant that has a socket
here and hands each event to that tenant's listeners (sockets), which queue the
already-encoded frame. So a change costs one ``PUBLISH``, however many sockets watch, and
one slow socket never holds up the rest.

Every event carries its sequence number. A hub keeps the last events per tenant, so a
socket that reconnects with the number it saw last gets what it missed, or is told to
read afresh (``resync``) when the hub cannot vouch for the gap.

A socket also registers the grants it lives on (its token, or its person's session:
``tenancy.signals``' principals). ``revoke(principals, reason)`` goes out on the control
channel that every hub of every process listens to, and each hub closes its sockets that
hold one of them. Events never pass there, so fanning them out costs what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction

from realtime.transport import (
    AT_LEAST_LUA,
    TOPICS,
    channel,
    control_channel,
    current_seq,
    encode,
    local_current,
    receive_locally,
    send_control,
    send_payloads,
    seq_key,
    stop_receiving,
)

__all__ = [
    "TOPICS",
    "Grantee",
    "Hub",
    "HubEvent",
    "Listener",
    "current_seq",
    "encode",
    "publish",
    "publish_many",
    "revoke",
    "send_payloads",
]

log = logging.getLogger(__name__)

# The topics an agent's own socket hears, of its own agent only (``agent_id`` in the data):
# its control, and the decisions of its approval requests.
AGENT_TOPICS = ("control.action", "approval.decided")
AGENT_PREFIXES = tuple(f'{{"topic":"{topic}",' for topic in AGENT_TOPICS)
# Events kept per tenant for sockets that come back: about a minute of a busy tenant's
# state changes; older gaps are answered with "resync".
RECENT = 512
# How long a hub remembers a grant that ended: a socket that was still authenticating when
# the word came (its check read the grant just before it ended) is refused as it registers.
# A revoked token or a signed-out session never becomes valid again, so remembering is safe.
REVOKED_MEMORY = 60.0


# --- publishing (any thread, sync) ------------------------------------------------------


def publish(tenant_id: int, topic: str, data: Mapping[str, Any]) -> None:
    """Publish after the current transaction commits (at once outside one). Never raises
    for a transport failure: the change is committed; a lost event is logged, and sockets
    learn of a gap from the sequence numbers."""
    payload = encode(topic, data)
    transaction.on_commit(lambda: send_payloads(tenant_id, [payload]))


def publish_many(tenant_id: int, topic: str, items: Iterable[Mapping[str, Any]]) -> None:
    payloads = [encode(topic, data) for data in items]
    if payloads:
        transaction.on_commit(lambda: send_payloads(tenant_id, payloads))


def revoke(principals: Iterable[str], reason: str) -> None:
    """End the grants ``principals`` (``tenancy.signals``' keys) now: every hub of every
    process closes its sockets that hold one of them. Sync, from any thread; call it once
    the revocation has committed. Never raises for a transport failure (logged)."""
    keys = sorted({str(p) for p in principals})
    if keys:
        send_control(json.dumps({"type": "revoke", "principals": keys, "reason": reason}, separators=(",", ":")))


# --- the hub (one per event loop, async) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class HubEvent:
    tenant_id: int
    seq: int
    topic: str
    data: dict[str, Any]
    frame: str  # the event socket's frame, encoded once for every socket


class Listener(Protocol):
    def deliver(self, event: HubEvent) -> None:
        """Take one event; must not block (queue it)."""

    def resync(self) -> None:
        """The hub may have missed events (its transport reconnected)."""


class Grantee(Protocol):
    """A socket as the hub knows its grants: the principals it lives on."""

    principals: tuple[str, ...]

    def end_access(self, reason: str) -> None:
        """One of its grants ended: stop sending and close (must not block)."""

    def recheck(self) -> None:
        """The hub may have missed the end of a grant: read them again (must not block)."""


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.listeners: dict[int, set[Listener]] = {}
        self.agent_listeners: dict[str, set[Listener]] = {}
        self.members: dict[int, int] = {}  # listeners of both kinds per tenant
        self.recent: dict[int, deque[HubEvent]] = {}
        # Per tenant: the sequence number when this hub started watching it, and the last seen.
        self.watched_from: dict[int, int] = {}
        self.last_seq: dict[int, int] = {}
        self.sockets: set[Any] = set()  # client sockets, for the connection cap and pings
        self.opening = 0  # client sockets still authenticating
        self._redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._subscribe_lock = asyncio.Lock()
        self.connected = asyncio.Event()
        self.ever_connected = False
        self.unsynced: set[int] = set()  # tenants joined while Redis was away
        self.delivered = 0
        self.granted: dict[str, set[Grantee]] = {}  # principal -> its sockets here
        self.revoked: dict[str, float] = {}  # principal -> when its end was heard (monotonic)

    # lifecycle

    @classmethod
    def current(cls) -> Hub:
        """The hub of the running event loop, started on first use."""
        loop = asyncio.get_running_loop()
        hub = _by_loop.get(loop)
        if hub is None:
            hub = _by_loop[loop] = cls(loop)
            hub.start()
        return hub

    def start(self) -> None:
        receive_locally(self)
        if settings.L10.uses_redis:
            self._reader = self.loop.create_task(self._read_redis(), name="l10-hub-reader")
        else:
            self.connected.set()
        self._ticker = self.loop.create_task(self._tick(), name="l10-hub-pings")

    async def close(self) -> None:
        stop_receiving(self)
        _by_loop.pop(self.loop, None)
        for task in (self._reader, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    # listeners

    async def join(self, tenant_id: int, listener: Listener, *, agent_id: str | None = None) -> int:
        """Register a listener for every event of the tenant, or, with ``agent_id``, for
        that agent's ``AGENT_TOPICS`` events only (an agent's own socket). Returns the
        tenant's current sequence number."""
        first = self.members.get(tenant_id, 0) == 0
        self.members[tenant_id] = self.members.get(tenant_id, 0) + 1
        if agent_id is None:
            self.listeners.setdefault(tenant_id, set()).add(listener)
        else:
            self.agent_listeners.setdefault(agent_id, set()).add(listener)
        if first:
            try:
                await self._watch(tenant_id)
            except BaseException:
                self.leave(tenant_id, listener, agent_id=agent_id)
                raise
        return self.last_seq.get(tenant_id, 0)

    def leave(self, tenant_id: int, listener: Listener, *, agent_id: str | None = None) -> None:
        if agent_id is None:
            group = self.listeners.get(tenant_id, set())
            group.discard(listener)
            if not group:
                self.listeners.pop(tenant_id, None)
        else:
            group = self.agent_listeners.get(agent_id, set())
            group.discard(listener)
            if not group:
                self.agent_listeners.pop(agent_id, None)
        left = self.members.get(tenant_id, 0) - 1
        if left > 0:
            self.members[tenant_id] = left
            return
        self.members.pop(tenant_id, None)
        self.recent.pop(tenant_id, None)
        self.watched_from.pop(tenant_id, None)
        self.last_seq.pop(tenant_id, None)
        if self._pubsub is not None:
            self.loop.create_task(self._unsubscribe(tenant_id))

    async def _watch(self, tenant_id: int) -> None:
        if settings.L10.uses_redis:
            if not self.ever_connected:  # a hub just started: its first connection is on its way
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.connected.wait(), timeout=2)
            if not self.connected.is_set():
                # Subscribed, and its listeners told to resync, when Redis is back.
                self.unsynced.add(tenant_id)
                return
            async with self._subscribe_lock:
                await self._pubsub.subscribe(channel(tenant_id))
            # Read after subscribing: anything later arrives on the channel.
            value = await self._redis.get(seq_key(tenant_id))
            current = int(value) if value is not None else 0
        else:
            current = local_current(tenant_id)
        self.watched_from.setdefault(tenant_id, current)
        self.last_seq[tenant_id] = max(self.last_seq.get(tenant_id, 0), current)

    async def _unsubscribe(self, tenant_id: int) -> None:
        if tenant_id in self.members:
            return  # someone joined again meanwhile
        with contextlib.suppress(Exception):
            async with self._subscribe_lock:
                await self._pubsub.unsubscribe(channel(tenant_id))

    def since(self, tenant_id: int, seq: int) -> list[HubEvent] | None:
        """Events after ``seq`` for a socket coming back, or None when the hub cannot tell
        what it missed (it started watching later, or the gap left its memory)."""
        last = self.last_seq.get(tenant_id, 0)
        if seq == last:
            return []
        if seq > last or seq < self.watched_from.get(tenant_id, last):
            return None
        kept = [event for event in self.recent.get(tenant_id, ()) if event.seq > seq]
        if not kept or kept[0].seq != seq + 1:
            return None
        return kept

    # grants

    def admit(self, socket: Grantee) -> bool:
        """Register a socket under its principals; False, and not registered, when one of
        them has ended since the socket read it."""
        if any(p in self.revoked for p in socket.principals):
            return False
        for principal in socket.principals:
            self.granted.setdefault(principal, set()).add(socket)
        return True

    def dismiss(self, socket: Grantee) -> None:
        for principal in socket.principals:
            group = self.granted.get(principal)
            if group is not None:
                group.discard(socket)
                if not group:
                    del self.granted[principal]

    def control(self, payload: str) -> None:
        """A message of the control channel: ``revoke`` closes the sockets of its principals."""
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        principals = message.get("principals") if isinstance(message, dict) else None
        if not isinstance(message, dict) or message.get("type") != "revoke" or not isinstance(principals, list):
            log.warning("dropped a malformed message on the hub's control channel")
            return
        reason = str(message.get("reason") or "revoked")
        heard = time.monotonic()
        for key in map(str, principals):
            self.revoked[key] = heard
            for socket in list(self.granted.get(key, ())):
                try:
                    socket.end_access(reason)
                except Exception:  # one broken socket must not keep the others open
                    log.exception("a socket failed to close when its grant ended")

    def _recheck_grants(self) -> None:
        """After a lost connection the end of a grant may have passed unheard: each socket
        that holds one reads its grants again (one read per socket, on reconnect only)."""
        for socket in {s for group in self.granted.values() for s in group}:
            try:
                socket.recheck()
            except Exception:
                log.exception("a socket failed to recheck its grants")

    def _forget_revoked(self) -> None:
        cutoff = time.monotonic() - REVOKED_MEMORY
        for key, heard in list(self.revoked.items()):
            if heard < cutoff:
                del self.revoked[key]

    # delivery

    def dispatch(self, tenant_id: int, seq: int, payload: str) -> None:
        if tenant_id not in self.members:
            return
        if seq <= self.watched_from.get(tenant_id, 0):
            return  # published before this hub read the sequence: a joining socket resyncs for it
        if tenant_id not in self.listeners and not payload.startswith(AGENT_PREFIXES):
            # Only agents' sockets here, and they take their own topics alone (a fleet's
            # heartbeats would otherwise be decoded a hundred times a second for nobody).
            self.last_seq[tenant_id] = max(self.last_seq.get(tenant_id, 0), seq)
            return
        try:
            body = json.loads(payload)
        except ValueError:
            log.warning("dropped a malformed event on tenant %s's channel", tenant_id)
            return
        frame = f'{{"type":"event","seq":{seq},{payload[1:]}'
        event = HubEvent(tenant_id, seq, body["topic"], body["data"], frame)
        recent = self.recent.setdefault(tenant_id, deque(maxlen=RECENT))
        recent.append(event)
        self.last_seq[tenant_id] = max(self.last_seq.get(tenant_id, 0), seq)
        targets = list(self.listeners.get(tenant_id, ()))
        if event.topic in AGENT_TOPICS:
            targets += self.agent_listeners.get(str(event.data.get("agent_id")), ())
        for listener in targets:
            try:
                listener.deliver(event)
            except Exception:  # one broken socket must not stop the others
                log.exception("a listener failed on event %s of tenant %s", seq, tenant_id)
        self.delivered += 1

    async def _read_redis(self) -> None:
        """Read the subscribed channels; on a lost connection, reconnect with back-off,
        subscribe again and tell every listener it may have missed events."""
        import redis.asyncio as aioredis

        delay = 0.1
        while True:
            try:
                # socket_timeout None: an idle subscription must not time out (docs/architecture.md,
                # "The hub": redis-py 8 times idle reads out after 5 s by default).
                self._redis = aioredis.Redis.from_url(
                    settings.L10.redis_url, socket_timeout=None, socket_connect_timeout=2, health_check_interval=0
                )
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                # Always subscribed to something, so reading never returns at once.
                keepalive = f"l10:hub:{settings.L10.redis_db}:keepalive"
                control = control_channel()
                control_name = control.encode()
                await self._pubsub.subscribe(keepalive, control, *(channel(t) for t in self.members))
                delay = 0.1
                lost, self.ever_connected = self.ever_connected, True
                self.connected.set()
                # After a lost connection every listener may have missed events; else only
                # those that joined while there was none.
                tenants = set(self.members) if lost else self.unsynced & set(self.members)
                self.unsynced.clear()
                await self._after_reconnect(tenants)
                if lost:
                    self._recheck_grants()
                while True:
                    message = await self._pubsub.get_message(timeout=None)
                    if message is None or message.get("type") != "message":
                        continue
                    if message["channel"] == control_name:
                        self.control(message["data"].decode())
                        continue
                    name = message["channel"].decode()
                    raw = message["data"].decode()
                    number, _, payload = raw.partition(" ")
                    self.dispatch(int(name.rsplit(":", 1)[1]), int(number), payload)
                    # Let the sockets send what it queued before the next event: a burst
                    # read from one buffer would otherwise fill every outbox at once and
                    # drop readers that keep up (docs/operations.md, "Faults").
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("hub lost Redis (%s); reconnecting in %.1f s", exc, delay)
                with contextlib.suppress(Exception):
                    await self._redis.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _after_reconnect(self, tenants: set[int]) -> None:
        if not tenants:
            return
        for tenant_id in tenants:
            self.recent.pop(tenant_id, None)
            # Never below what this hub has seen: Redis may have come back empty.
            seen = self.last_seq.get(tenant_id, 0)
            current = int(await self._redis.eval(AT_LEAST_LUA, 1, seq_key(tenant_id), seen))
            self.watched_from[tenant_id] = current
            self.last_seq[tenant_id] = current
            for listener in list(self.listeners.get(tenant_id, ())):
                listener.resync()
        # Agents' sockets read their control afresh (cheap, and a change may have been lost).
        for group in list(self.agent_listeners.values()):
            for listener in list(group):
                listener.resync()

    async def _tick(self) -> None:
        """One timer for every client socket's pings, instead of one per socket. Each
        second pings the sockets whose slot comes up, so the pings (and the pongs coming
        back) of a thousand sockets are spread over the interval, not sent in one burst
        that events would queue behind."""
        second = 0
        while True:
            await asyncio.sleep(1)
            second += 1
            if self.revoked:
                self._forget_revoked()
            interval = settings.L10.ws_heartbeat_interval
            for socket in list(self.sockets):
                if socket.ping_slot % interval != second % interval:
                    continue
                try:
                    socket.tick()
                except Exception:
                    log.exception("a socket failed its ping tick")


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


async def close_current() -> None:
    """Close the running loop's hub, if it has one (at server shutdown)."""
    found = _by_loop.get(asyncio.get_running_loop())
    if found is not None:
        await found.close()
