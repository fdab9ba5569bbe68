"""One event to 1,000 sockets: publish → the last socket's receipt, beside raw Redis pub/sub.

The target: with 1,000 sockets of one tenant open on one server process, an
``agent.state.changed`` event reaches the last of them within 50 ms (p99).

- The console: one uvicorn process on core 1 with PostgreSQL and Redis, as
  ``bench/common.py`` starts it, with ``L10_WS_MAX_CONNECTIONS`` raised to
  ``SERVER_MAX_CONNECTIONS`` so the cap is not what is measured.
- The sockets: this process (core 0), one asyncio loop (uvloop) with the ``websockets``
  client, opens ``SOCKETS`` sockets to ``/ws/events?tenant_id=<slug>`` with the tenant's
  API token (``Authorization: Bearer``), each subscribing to ``agent.state.changed`` and
  answering the server's pings. Frames are read as they come; an event's seq is read from
  the frame's fixed prefix (no JSON parse on the hot path) and its receipt time noted.
- Fan-out: ``EVENTS`` events published one at a time from this process's loop with
  ``realtime.hub.send_payloads`` (the sync publish services and Celery use: one Lua
  ``INCR`` + ``PUBLISH``), the clock read just before the call; the figure is the time
  until the LAST of the sockets received it (matched on seq, and on a nonce of this run in
  the event's data, since Redis pub/sub channels are shared by every Redis database). The
  next event goes out only when every socket has this one (or its deadline passed).
- Floor: the same loop, a plain ``PUBLISH`` with the sync redis-py client, received by one
  ``redis.asyncio`` subscriber in this process: what the data store alone costs.
- This process freezes its objects out of garbage collection once the sockets are open
  (a thousand clients in one process; a full collection showed in the receipt times).
- Memory: the server's ``VmRSS`` before the first socket and with all of them open and
  idle.
- Publishing from sync code (docs/architecture.md, "The hub"): per call,
  the hub's ``send_payloads`` against channels-redis's ``RedisPubSubChannelLayer``
  ``group_send`` through ``async_to_sync`` (what the pub/sub layer as transport would cost
  services and Celery), beside a raw redis-py ``PUBLISH``. Measured before the server
  subscribes to anything, so no call pays for delivery.

A socket that closes during the run, or an event that does not reach every socket before
its deadline, fails the "disconnects and undelivered events" row (target 0).

This process publishes as a service would, so Django is set up here with the server's
environment (``common.server_env()``: the bench database, Redis DB 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench import common
from bench.common import Row

SOCKETS = common.sized(1000, 20)
TENANT_SLUG = "fanout"
TOPIC = "agent.state.changed"
EVENTS = common.sized(350, 40)
EVENT_PERIOD = 0.1  # seconds between two publishes: the window (35 s) spans one of the server's
# ping rounds (every 30 s by default, a frame to each socket at once), as a real minute would
# A small run's window (4 s) spans ping rounds too: the server pings every 2 s there.
SERVER_PING_ENV = common.sized({}, {"L10_WS_HEARTBEAT_INTERVAL": "2"})
WARMUP_EVENTS = common.sized(10, 3)
FLOOR_EVENTS = common.sized(200, 20)
PUBLISH_CALLS = common.sized(300, 20)  # per publish path, from sync code
PUBLISH_WARMUP = common.sized(20, 3)
TARGET_P99_MS = 50.0
SERVER_MAX_CONNECTIONS = 5000
CONNECT_CONCURRENCY = common.sized(50, 5)  # handshakes in flight at once while opening the sockets
CONNECT_SECONDS = common.sized(120.0, 30.0)  # bound on opening every socket
IDLE_SECONDS = common.sized(5.0, 1.0)  # all sockets open and idle before the second RSS reading
EVENT_DEADLINE_SECONDS = 5.0  # an event that has not reached every socket by then is undelivered
GAP_SECONDS = 0.01  # between one event's last receipt and the next publish
EVENT_PREFIX = '{"type":"event","seq":'


# --- this process as a publisher -------------------------------------------------------


def django_setup() -> None:
    """Configure Django in this process as the server is (``common.server_env()``), so
    ``realtime.hub`` publishes to the same Redis database the server reads."""
    from django.apps import apps

    env = common.server_env()
    if not apps.ready:
        import django

        # Settings read the environment once, in setup: the other benchmarks of this
        # process, and the processes they start, keep theirs. Django's LOGGING would send
        # every library's INFO lines (httpx's requests) to stderr: logging stays as it was.
        saved = dict(os.environ)
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        os.environ.update({k: v for k, v in env.items() if k.startswith("L10_") or k == "DJANGO_SETTINGS_MODULE"})
        try:
            django.setup()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            root.setLevel(level)
            root.handlers[:] = handlers
    from django.conf import settings

    expected = f"redis://{common.HOST}:{common.REDIS_PORT}/{env['L10_REDIS_DB']}"
    if settings.L10.redis_url != expected:
        raise RuntimeError(f"Django in this process uses {settings.L10.redis_url}, the server {expected}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ws_url(base_url: str) -> str:
    return "ws" + base_url.removeprefix("http")


def pct(values: list[float], q: float) -> float:
    return common.percentile(values, q) if values else 0.0


# --- the sockets -------------------------------------------------------------------------


@dataclass
class Tracker:
    """Receipts per seq: how many sockets have it and when the last did."""

    nonce: str
    expected: int
    count: dict[int, int] = field(default_factory=dict)
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    foreign: int = 0  # events of another publisher on the same channel name (other Redis db)

    def wait(self, seq: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.count.get(seq, 0) >= self.expected:
            future.set_result(None)
        else:
            self.waiting[seq] = future
        return future

    def received(self, seq: int, now: float) -> None:
        n = self.count.get(seq, 0) + 1
        self.count[seq] = n
        if n == 1:
            self.first[seq] = now
        self.last[seq] = now
        if n >= self.expected:
            future = self.waiting.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(None)


@dataclass
class Sockets:
    """``SOCKETS`` subscribed clients and what they saw."""

    url: str  # ws://host:port
    tenant: str  # slug or id, as the query names it
    token: str
    tracker: Tracker
    clients: list[Client] = field(default_factory=list)
    stopping: bool = False
    pings: int = 0  # pings answered, all sockets together
    ping_times: list[float] = field(default_factory=list)  # when each ping arrived
    on_drop: Callable[[Client], None] | None = None

    @property
    def drops(self) -> list[Client]:
        return [c for c in self.clients if c.dropped]

    async def open(self, count: int) -> float:
        """Open ``count`` sockets, each subscribed; seconds it took. Raises if any fails."""
        started = time.perf_counter()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(index: int) -> Client:
            async with gate:
                client = Client(index, self)
                await client.start()
                return client

        tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
        try:
            done = await asyncio.wait_for(asyncio.gather(*tasks), timeout=CONNECT_SECONDS)
        except BaseException:
            for task in tasks:
                task.cancel()
            self.clients = [t.result() for t in tasks if t.done() and not t.cancelled() and not t.exception()]
            await self.close()
            raise
        self.clients = list(done)
        return time.perf_counter() - started

    async def close(self) -> None:
        self.stopping = True
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


class Client:
    def __init__(self, index: int, sockets: Sockets) -> None:
        self.index = index
        self.sockets = sockets
        self.ws: ClientConnection | None = None
        self.subscribed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.events = 0  # this run's events received
        self.pings = 0
        self.resyncs = 0
        self.errors: list[str] = []
        self.dropped = False
        self.close_code: int | None = None
        self.close_reason = ""

    async def start(self) -> None:
        self.ws = await connect(
            f"{self.sockets.url}/ws/events?tenant_id={self.sockets.tenant}",
            additional_headers={"Authorization": f"Bearer {self.sockets.token}"},
            compression=None,  # the server runs with --ws-per-message-deflate false
            ping_interval=None,  # the application's own pings are what is tested
            proxy=None,
            open_timeout=30,
            close_timeout=5,
        )
        self.reader = asyncio.get_running_loop().create_task(self.read())
        await self.ws.send(json.dumps({"type": "subscribe", "topics": [TOPIC]}))
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout=30)
        except TimeoutError:
            raise RuntimeError(f"socket {self.index}: no 'subscribed' answer ({self.errors or 'closed?'})") from None

    async def read(self) -> None:
        assert self.ws is not None
        ws, tracker = self.ws, self.sockets.tracker
        nonce = tracker.nonce
        try:
            async for message in ws:
                now = time.perf_counter()
                if not isinstance(message, str):
                    self.errors.append("binary frame")
                    continue
                if message.startswith(EVENT_PREFIX):
                    if nonce not in message:
                        tracker.foreign += 1
                        continue
                    seq = int(message[len(EVENT_PREFIX) : message.index(",", len(EVENT_PREFIX))])
                    self.events += 1
                    tracker.received(seq, now)
                    continue
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "ping":
                    self.pings += 1
                    self.sockets.pings += 1
                    self.sockets.ping_times.append(now)
                    await ws.send('{"type":"pong"}')
                elif kind == "subscribed":
                    self.subscribed.set()
                elif kind == "resync":
                    self.resyncs += 1
                else:
                    self.errors.append(message[:200])
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
            if not self.sockets.stopping:
                self.dropped = True
                if self.sockets.on_drop is not None:
                    self.sockets.on_drop(self)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.reader, timeout=5)

    def describe(self) -> str:
        return f"socket {self.index}: closed {self.close_code} {self.close_reason!r}".strip()


def ping_rounds(times: list[float], since: float = 0.0) -> list[tuple[int, float]]:
    """The server's ping rounds as the sockets saw them: (pings, ms from the first to the last)."""
    rounds: list[list[float]] = []
    for t in sorted(t for t in times if t >= since):
        if rounds and t - rounds[-1][-1] < 1.0:
            rounds[-1].append(t)
        else:
            rounds.append([t])
    return [(len(r), (r[-1] - r[0]) * 1000) for r in rounds]


def describe_rounds(rounds: list[tuple[int, float]]) -> str:
    if not rounds:
        return "no ping round"
    spans = [ms for _, ms in rounds]
    return (
        f"{len(rounds)} ping round(s) of {min(n for n, _ in rounds)}–{max(n for n, _ in rounds)} pings, each "
        f"reaching its sockets within {min(spans):.0f}–{max(spans):.0f} ms (first to last)"
    )


def describe_drops(clients: list[Client]) -> str:
    if not clients:
        return "none"
    codes: dict[str, int] = {}
    for c in clients:
        key = f"{c.close_code} {c.close_reason}".strip()
        codes[key] = codes.get(key, 0) + 1
    return ", ".join(f"close {k} x{n}" for k, n in sorted(codes.items()))


def event_data(nonce: str, n: int) -> dict[str, Any]:
    return {
        "agent_id": f"00000000-0000-4000-8000-{n:012d}",
        "external_id": f"bench-{n % 50:04d}",
        "from": "running",
        "to": "paused" if n % 2 else "running",
        "at": "2025-01-01T00:00:00+00:00",
        "bench": nonce,
    }


# --- the measurements ----------------------------------------------------------------------


@dataclass
class FanoutResult:
    latencies_ms: list[float]
    first_ms: list[float]
    quiet_ms: list[float]  # the events no ping round overlapped
    undelivered: list[tuple[int, int]]  # (seq, sockets that had it at the deadline)
    publish_failed: int
    server_cpu: float
    client_cpu: float
    seconds: float
    pings: int = 0  # pings the sockets answered during the window
    rounds: list[tuple[int, float]] = field(default_factory=list)  # ping rounds during the window


async def fan_out(sockets: Sockets, tenant_id: int, count: int, pid: int, period: float = 0.0) -> FanoutResult:
    """Publish ``count`` events one at a time, one every ``period`` seconds at most;
    publish → last receipt of each."""
    from realtime import hub

    tracker = sockets.tracker
    latencies: list[float] = []
    firsts: list[float] = []
    quiet: list[float] = []
    undelivered: list[tuple[int, int]] = []
    failed = 0
    cpu, own, began = common.cpu_seconds(pid), time.process_time(), time.perf_counter()
    for n in range(count):
        if sockets.drops:
            break  # no later event can reach every socket
        payload = hub.encode(TOPIC, event_data(tracker.nonce, n))
        pings = sockets.pings
        t0 = time.perf_counter()
        seqs = hub.send_payloads(tenant_id, [payload])
        if not seqs:
            failed += 1
            continue
        seq = seqs[0]
        try:
            await asyncio.wait_for(tracker.wait(seq), timeout=EVENT_DEADLINE_SECONDS)
        except TimeoutError:
            tracker.waiting.pop(seq, None)
            undelivered.append((seq, tracker.count.get(seq, 0)))
            continue
        latencies.append((tracker.last[seq] - t0) * 1000)
        if sockets.pings == pings:
            quiet.append(latencies[-1])
        firsts.append((tracker.first[seq] - t0) * 1000)
        await asyncio.sleep(max(GAP_SECONDS, began + (n + 1) * period - time.perf_counter()))
    seconds = time.perf_counter() - began
    return FanoutResult(
        latencies,
        firsts,
        quiet,
        undelivered,
        failed,
        server_cpu=(common.cpu_seconds(pid) - cpu) / seconds,
        client_cpu=(time.process_time() - own) / seconds,
        seconds=seconds,
    )


async def redis_floor(count: int) -> list[float]:
    """Plain PUBLISH (sync redis-py, on this loop as send_payloads is) → one redis.asyncio
    subscriber in this process; ms per event."""
    name = f"l10:bench:floor:{secrets.token_hex(4)}"
    publisher = redis.Redis(host=common.HOST, port=common.REDIS_PORT, db=common.REDIS_DB)
    subscriber = aioredis.Redis(host=common.HOST, port=common.REDIS_PORT, db=common.REDIS_DB, socket_timeout=None)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(name)
    arrived: dict[int, float] = {}
    waiting: dict[int, asyncio.Future[None]] = {}

    async def read() -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None or message.get("type") != "message":
                continue
            now = time.perf_counter()
            n = int(message["data"].split(b" ", 1)[0])
            arrived[n] = now
            future = waiting.pop(n, None)
            if future is not None and not future.done():
                future.set_result(None)

    reader = asyncio.get_running_loop().create_task(read())
    body = hub_payload_like()
    out: list[float] = []
    try:
        for n in range(count + WARMUP_EVENTS):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiting[n] = future
            t0 = time.perf_counter()
            publisher.publish(name, f"{n} {body}")
            await asyncio.wait_for(future, timeout=EVENT_DEADLINE_SECONDS)
            if n >= WARMUP_EVENTS:
                out.append((arrived[n] - t0) * 1000)
            await asyncio.sleep(GAP_SECONDS)
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        await pubsub.aclose()
        await subscriber.aclose()
        publisher.close()
    return out


def hub_payload_like() -> str:
    from realtime import hub

    return hub.encode(TOPIC, event_data("floor", 0))


def publish_costs(tenant_id: int) -> dict[str, list[float]]:
    """Per-call cost (ms) of each publish path from sync code (no event loop running)."""
    from asgiref.sync import async_to_sync
    from channels_redis.pubsub import RedisPubSubChannelLayer
    from django.conf import settings

    from realtime import hub

    payload = hub_payload_like()
    layer = RedisPubSubChannelLayer(hosts=[{"address": settings.L10.redis_url, "socket_timeout": None}])
    group_send = async_to_sync(layer.group_send)
    raw = redis.Redis(host=common.HOST, port=common.REDIS_PORT, db=common.REDIS_DB)
    raw_channel = f"l10:bench:raw:{secrets.token_hex(4)}"
    group = f"l10-bench-tenant-{tenant_id}"
    seq = 0

    def ours() -> None:
        if not hub.send_payloads(tenant_id, [payload]):
            raise RuntimeError("send_payloads failed")

    def layers() -> None:
        nonlocal seq
        seq += 1
        group_send(group, {"type": "hub.event", "tenant": tenant_id, "seq": seq, "payload": payload})

    def plain() -> None:
        raw.publish(raw_channel, payload)

    out: dict[str, list[float]] = {}
    try:
        for name, call in (("hub", ours), ("layer", layers), ("raw", plain)):
            for _ in range(PUBLISH_WARMUP):
                call()
            timings = []
            for _ in range(PUBLISH_CALLS):
                start = time.perf_counter()
                call()
                timings.append((time.perf_counter() - start) * 1000)
            out[name] = timings
    finally:
        raw.close()
    return out


@dataclass
class Measured:
    floor_ms: list[float]
    rss_before: float
    rss_idle: float
    connect_s: float
    fanout: FanoutResult
    drops: list[Client]
    sockets: int
    foreign: int
    resyncs: int
    pings: int
    errors: list[str]


async def measure(url: str, token: str, tenant_id: int, pid: int) -> Measured:
    common.progress(f"floor: {FLOOR_EVENTS} raw PUBLISH → one redis.asyncio subscriber")
    floor_ms = await redis_floor(FLOOR_EVENTS)
    rss_before = rss_mb(pid)
    tracker = Tracker(nonce=secrets.token_hex(8), expected=SOCKETS)
    sockets = Sockets(ws_url(url), TENANT_SLUG, token, tracker)
    sockets.on_drop = lambda c: common.progress(f"DROPPED {c.describe()}")
    common.progress(f"opening {SOCKETS} sockets ({CONNECT_CONCURRENCY} handshakes at a time)")
    connect_s = await sockets.open(SOCKETS)
    common.progress(f"{SOCKETS} sockets open and subscribed in {connect_s:.1f} s; idle {IDLE_SECONDS:.0f} s")
    # The thousand clients live in this one process, as a thousand browsers would not: keep
    # their connections out of this process's garbage collections (as the server does,
    # l10console/asgi.py), or a full collection here shows in the receipt times.
    gc.collect()
    gc.freeze()
    try:
        await asyncio.sleep(IDLE_SECONDS)
        rss_idle = rss_mb(pid)
        common.progress(f"server RSS {rss_before:.1f} MB before, {rss_idle:.1f} MB with {SOCKETS} idle sockets")
        await fan_out(sockets, tenant_id, WARMUP_EVENTS, pid)
        common.progress(f"fan-out: {EVENTS} events, one every {EVENT_PERIOD:g} s at most, to {SOCKETS} sockets")
        pings, window = sockets.pings, time.perf_counter()
        result = await fan_out(sockets, tenant_id, EVENTS, pid, EVENT_PERIOD)
        result.pings = sockets.pings - pings
        result.rounds = ping_rounds(sockets.ping_times, since=window)
        drops = sockets.drops
    finally:
        await sockets.close()
        gc.unfreeze()
    return Measured(
        floor_ms=floor_ms,
        rss_before=rss_before,
        rss_idle=rss_idle,
        connect_s=connect_s,
        fanout=result,
        drops=drops,
        sockets=len(sockets.clients),
        foreign=tracker.foreign,
        resyncs=sum(c.resyncs for c in sockets.clients),
        pings=sum(c.pings for c in sockets.clients),
        errors=[e for c in sockets.clients for e in c.errors][:5],
    )


def run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run() -> list[Row]:
    common.flush_redis()
    common.recreate_database()
    seed = common.seed_tenant(TENANT_SLUG)
    django_setup()

    common.progress(f"publish cost from sync code: {PUBLISH_CALLS} calls per path")
    costs = publish_costs(seed.tenant_id)

    with common.server({"L10_WS_MAX_CONNECTIONS": str(SERVER_MAX_CONNECTIONS), **SERVER_PING_ENV}) as srv:
        measured: Measured = run_loop(measure(srv.base_url, seed.token, seed.tenant_id, srv.pid))

    fan = measured.fanout
    if not fan.latencies_ms:
        raise AssertionError(f"no event reached all {SOCKETS} sockets: {fan.undelivered[:5]}, drops {measured.drops}")
    f50, f99 = pct(measured.floor_ms, 50), pct(measured.floor_ms, 99)
    p50, p99 = pct(fan.latencies_ms, 50), pct(fan.latencies_ms, 99)
    failures = len(measured.drops) + len(fan.undelivered) + fan.publish_failed
    hub_ms, layer_ms, raw_ms = costs["hub"], costs["layer"], costs["raw"]
    met = len(fan.latencies_ms) - len(fan.quiet_ms)
    met_rounds = (
        f"{met} event(s) were out while pings were answered; without them p99 {pct(fan.quiet_ms, 99):.2f} ms, "
        f"max {max(fan.quiet_ms, default=0.0):.1f} ms"
        if met
        else "no event was out while pings were answered"
    )
    raw50 = pct(raw_ms, 50)
    fanout_note = (
        f"n={len(fan.latencies_ms)} events one at a time to {measured.sockets} sockets of one tenant in "
        f"{fan.seconds:.0f} s, one every {EVENT_PERIOD:g} s at most, meanwhile {describe_rounds(fan.rounds)}; "
        f"server CPU {fan.server_cpu:.0%} of its core, load generator "
        f"{fan.client_cpu:.0%} of its own; first receipt p50 "
        f"{pct(fan.first_ms, 50):.2f} ms; floor: plain PUBLISH → one redis.asyncio subscriber in this process, "
        f"n={len(measured.floor_ms)}"
    )
    return [
        Row(
            f"fan-out p50, publish → last of {SOCKETS:,} sockets",
            "ms",
            p50,
            floor=f50,
            note=fanout_note,
        ),
        Row(
            f"fan-out p99, publish → last of {SOCKETS:,} sockets",
            "ms",
            p99,
            target=TARGET_P99_MS,
            floor=f99,
            note=f"p90 {pct(fan.latencies_ms, 90):.2f} ms, max {max(fan.latencies_ms):.1f} ms; {met_rounds}; floor p90 "
            f"{pct(measured.floor_ms, 90):.2f} ms, max {max(measured.floor_ms):.2f} ms",
        ),
        Row(
            "fan-out: disconnects and undelivered events",
            "failures",
            float(failures),
            target=0.0,
            note=f"sockets closed during the run: {len(measured.drops)} ({describe_drops(measured.drops)}); events "
            f"not at every socket within {EVENT_DEADLINE_SECONDS:.0f} s: {len(fan.undelivered)}"
            f"{f' (seq, sockets reached) {fan.undelivered[:5]}' if fan.undelivered else ''}; publishes that failed: {fan.publish_failed}; resyncs "
            f"{measured.resyncs}, pings answered {measured.pings}, events of another publisher ignored "
            f"{measured.foreign}, unexpected frames {measured.errors or 'none'}",
        ),
        Row(
            f"server RSS per {SOCKETS:,} idle sockets",
            "MB",
            measured.rss_idle - measured.rss_before,
            note=f"uvicorn VmRSS {measured.rss_before:.1f} MB before the first socket, {measured.rss_idle:.1f} MB "
            f"with {SOCKETS} open, subscribed and idle for {IDLE_SECONDS:.0f} s (opened in "
            f"{measured.connect_s:.1f} s, {CONNECT_CONCURRENCY} handshakes at a time)",
        ),
        Row(
            "publish from sync code: hub send_payloads p50",
            "ms",
            pct(hub_ms, 50),
            floor=raw50,
            floor_label="redis-py PUBLISH",
            note=f"realtime.hub.send_payloads (one Lua INCR + PUBLISH, a cached sync client): p99 "
            f"{pct(hub_ms, 99):.2f} ms, n={len(hub_ms)}; floor: redis-py PUBLISH, p99 {pct(raw_ms, 99):.2f} ms",
        ),
        Row(
            "publish from sync code: channels-redis group_send p50",
            "ms",
            pct(layer_ms, 50),
            floor=raw50,
            floor_label="redis-py PUBLISH",
            note=f"RedisPubSubChannelLayer(socket_timeout=None).group_send through async_to_sync (a new event loop, "
            f"thread and connection per call): p99 {pct(layer_ms, 99):.2f} ms, n={len(layer_ms)}",
        ),
    ]


def drop_django_connections() -> None:
    """Close this process's Django connections and their pool: a bench that made the
    database again (``common.recreate_database``) left them pointing at the dropped one."""
    from django.db import connections

    for conn in connections.all():
        close_pool = getattr(conn, "close_pool", None)
        if close_pool is not None:
            close_pool()
        conn.close()
