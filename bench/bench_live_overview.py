"""The live overview: what open overview pages of one tenant cost the server while its
fleet reports, and how old the figures are when they reach the last page.

The target: the live overview costs a bounded amount of server CPU per tenant and
second, whatever the number of open pages (docs/architecture.md, "The hub").

- The console: one uvicorn process on core 1 with PostgreSQL and Redis, as
  ``bench/common.py`` starts it, with the default ``L10_LIVE_OVERVIEW_INTERVAL``.
- The fleet: ``AGENTS`` agents of one tenant, every one reporting every
  ``REPORT_EVERY`` seconds (evenly spread), from a thread of this process (core 0) through
  ``fleet.services.agent_heartbeat``, what ingestion calls: the agent's row, its minute
  row, and the hub event the server receives. So the server pays for the fleet's events
  as it would beside separate ingest processes, and the charts' minute in progress fills.
- The pages: this process opens ``PAGES`` sockets to ``/ws/live/<slug>/?view=overview``
  with a member's session cookie and our ``Origin``, as the overview's script does, and
  reads every frame.
- Phases of ``WINDOW`` seconds each, in ``ROUNDS`` rounds: no page open, one page, all
  ``PAGES``; the server's CPU time over each. The overview's cost is a phase's CPU less
  the no-page phase's of the same round (the fleet's events cost the same in both).
- Age: each overview frame's tiles carry the time their figures were read (the
  ``datetime`` of "Figures read …"); the age is a page's receipt time less that (one
  machine, one clock). Per update: the age at the last page to receive it, and the
  spread from the first page's receipt to the last's (the fan-out).
- Floor: a plain ``PUBLISH`` to one ``redis.asyncio`` subscriber in this process
  (``bench_fanout.redis_floor``): what the data store alone costs to move a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench import bench_fanout, common
from bench.common import Row

AGENTS = common.sized(1000, 40)
PAGES = common.sized(100, 5)
REPORT_EVERY = 10.0  # seconds between two reports of one agent (L10_AGENT_HEARTBEAT_INTERVAL's default)
WINDOW = common.sized(20.0, 4.0)  # seconds per phase
ROUNDS = common.sized(2, 1)
INTERVAL = 3  # L10_LIVE_OVERVIEW_INTERVAL's default, which the server runs with
FLOOR_EVENTS = common.sized(200, 20)
TENANT_SLUG = "live"
MEMBER = "viewer"
# Targets. The overview's own cost with every page open: its reads and render once per
# interval (about 20 ms at 1,000 agents) and a frame to each page. Per extra page: a frame
# written every interval. Age at the last page: the reads, the render and the fan-out.
TARGET_COST_MS_PER_S = 50.0  # 5 % of a core per tenant
TARGET_PAGE_US_PER_S = 100.0  # per open page, per second
TARGET_SPREAD_P99_MS = 50.0
TARGET_AGE_P99_MS = 250.0
AS_OF = re.compile(r'data-testid="overview-as-of".*?datetime="([^"]+)"', re.S)
TOTAL = re.compile(r'data-testid="total-agents">([\d,]+)<')


# --- the fleet ---------------------------------------------------------------------------


class Fleet(threading.Thread):
    """Every agent reports every ``REPORT_EVERY`` seconds, spread evenly, until stopped."""

    def __init__(self, tenant_id: int, external_ids: list[str]) -> None:
        super().__init__(name="bench-fleet", daemon=True)
        self.tenant_id = tenant_id
        self.external_ids = external_ids
        self.stopping = threading.Event()
        self.reports = 0
        self.late = 0  # reports that went out more than a second behind their time
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection

        from fleet import services
        from ingest.schemas import Metrics
        from tenancy.models import Tenant

        try:
            tenant = Tenant.objects.get(pk=self.tenant_id)
            gap = REPORT_EVERY / len(self.external_ids)
            started = time.monotonic()
            n = 0
            while not self.stopping.is_set():
                due = started + n * gap
                wait = due - time.monotonic()
                if wait > 0:
                    self.stopping.wait(wait)
                elif wait < -1:
                    self.late += 1
                i = n % len(self.external_ids)
                reading = Metrics.model_validate(
                    {"cpu_percent": 20 + i % 60, "memory_mb": 256 + i % 512, "tokens": 50 + i % 100,
                     "requests": 5 + i % 7, "errors": i % 2, "latency_p95_ms": 100 + i % 400}
                )  # fmt: skip
                services.agent_heartbeat(
                    tenant=tenant, external_id=self.external_ids[i], state="running", reading=reading
                )
                self.reports += 1
                n += 1
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"the simulated fleet failed: {self.error!r}") from self.error


# --- the pages ---------------------------------------------------------------------------


@dataclass
class Update:
    """One overview update as the pages received it."""

    read_at: float  # when its figures were read (unix seconds)
    receipts: list[float] = field(default_factory=list)


@dataclass
class Pages:
    url: str
    cookie: str
    updates: dict[str, Update] = field(default_factory=dict)  # by the time its figures were read
    sockets: list[ClientConnection] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    frames: int = 0
    frame_bytes: int = 0  # the largest overview frame
    totals: set[str] = field(default_factory=set)  # the fleet's size as the tiles said it
    filled: int = 0  # frames whose minute in progress had tokens
    stopping: bool = False

    async def open(self, count: int) -> None:
        for _ in range(count - len(self.sockets)):
            ws = await connect(
                f"{self.url}/ws/live/{TENANT_SLUG}/?view=overview",
                additional_headers={"Cookie": self.cookie},
                origin=self.url.replace("ws", "http", 1),  # type: ignore[arg-type]
                compression=None,
                ping_interval=None,
                proxy=None,
                open_timeout=30,
            )
            self.sockets.append(ws)
            self.readers.append(asyncio.get_running_loop().create_task(self.read(ws)))

    async def close_to(self, count: int) -> None:
        while len(self.sockets) > count:
            ws, reader = self.sockets.pop(), self.readers.pop()
            self.stopping = True
            await ws.close()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(reader, timeout=5)
            self.stopping = False

    async def read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                now = time.time()
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind == "overview":
                    self.frames += 1
                    self.frame_bytes = max(
                        self.frame_bytes, len(message.encode() if isinstance(message, str) else message)
                    )
                    found = AS_OF.search(frame["html"])
                    if found is None:
                        raise AssertionError(f"an overview frame without its time: {frame['html'][:300]}")
                    key = found.group(1)
                    update = self.updates.get(key)
                    if update is None:
                        update = self.updates[key] = Update(datetime.fromisoformat(key).timestamp())
                        total = TOTAL.search(frame["html"])
                        self.totals.add(total.group(1) if total else "?")
                        tails = frame.get("tails") or {}
                        tokens = tails.get("60", {}).get("charts", {}).get("tokens", [[None, None]])[0]
                        self.filled += tokens[1] is not None
                    update.receipts.append(now)
        except ConnectionClosed:
            pass
        finally:
            if not self.stopping:
                self.closed.append(f"closed {ws.close_code} {ws.close_reason!r}")


@dataclass
class Phase:
    pages: int
    cpu_ms_per_s: float
    since: float  # unix times the phase's window opened and closed
    until: float


async def measure(base_url: str, cookie: str, pid: int) -> tuple[list[Phase], Pages, list[float]]:
    pages = Pages(bench_fanout.ws_url(base_url), cookie)
    phases: list[Phase] = []
    try:
        for round_ in range(ROUNDS):
            for count in (0, 1, PAGES):
                await pages.close_to(count)
                await pages.open(count)
                await asyncio.sleep(INTERVAL + 1)  # the first update of the new pages is out
                common.progress(f"round {round_ + 1}: {count} overview page(s) for {WINDOW:.0f} s")
                since, cpu0, t0 = time.time(), common.cpu_seconds(pid), time.perf_counter()
                await asyncio.sleep(WINDOW)
                cpu = (common.cpu_seconds(pid) - cpu0) * 1000 / (time.perf_counter() - t0)
                phases.append(Phase(count, cpu, since, time.time()))
        await pages.close_to(0)
    finally:
        pages.stopping = True
        await asyncio.gather(*(ws.close() for ws in pages.sockets), return_exceptions=True)
    floor = await bench_fanout.redis_floor(FLOOR_EVENTS)
    return phases, pages, floor


# --- the run -----------------------------------------------------------------------------


def session_cookie(tenant_id: int) -> str:
    """A member's signed-in session, made by Django's test client in this process (the
    same session store as the server's)."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    from tenancy.models import Membership

    user = User.objects.create_user(MEMBER, password=None)
    Membership.objects.create(user=user, tenant_id=tenant_id, role="viewer")
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def run() -> list[Row]:
    pinning = common.pin_client()
    common.flush_redis()
    common.recreate_database()
    external_ids = [f"agent-{i:05d}" for i in range(AGENTS)]
    seed = common.seed_tenant(TENANT_SLUG, external_ids)
    bench_fanout.django_setup()
    bench_fanout.drop_django_connections()  # an earlier bench's connection went with the database it dropped
    cookie = session_cookie(seed.tenant_id)

    fleet = Fleet(seed.tenant_id, external_ids)
    fleet.start()
    try:
        with common.server() as srv:
            phases, pages, floor = bench_fanout.run_loop(measure(srv.base_url, cookie, srv.pid))
    finally:
        fleet.stop()
    bench_fanout.drop_django_connections()

    if pages.closed:
        raise AssertionError(f"pages' sockets closed during the run: {pages.closed[:5]}")
    if pages.totals != {f"{AGENTS:,}"}:
        raise AssertionError(f"the tiles counted {sorted(pages.totals)} agents, not {AGENTS:,}")
    if not pages.filled:
        raise AssertionError("no update carried the minute in progress: the fleet's reports did not reach the charts")

    by_count: dict[int, list[float]] = {}
    for phase in phases:
        by_count.setdefault(phase.pages, []).append(phase.cpu_ms_per_s)
    base = by_count[0]
    one = [p - b for p, b in zip(by_count[1], base, strict=True)]
    full = [p - b for p, b in zip(by_count[PAGES], base, strict=True)]
    cost_one, cost_full = sum(one) / len(one), sum(full) / len(full)
    per_page_us = max(0.0, cost_full - cost_one) * 1000 / (PAGES - 1)

    windows = [(p.since, p.until) for p in phases if p.pages == PAGES]
    measured = [u for u in pages.updates.values() if any(a <= u.read_at <= b for a, b in windows)]
    shared = [u for u in measured if len(u.receipts) == PAGES]
    partial = len(measured) - len(shared)
    expected = int(ROUNDS * WINDOW / INTERVAL)
    if len(shared) < expected or partial:
        raise AssertionError(
            f"{len(shared)} updates reached all {PAGES} pages (at least {expected} due), {partial} some"
        )
    ages = [(max(u.receipts) - u.read_at) * 1000 for u in shared]
    spreads = [(max(u.receipts) - min(u.receipts)) * 1000 for u in shared]
    f99 = bench_fanout.pct(floor, 99)
    context = (
        f"{AGENTS:,} agents each reporting every {REPORT_EVERY:g} s ({fleet.reports:,} reports, {fleet.late} late), "
        f"updates every {INTERVAL} s; {ROUNDS} round(s) of {WINDOW:g} s per phase; {pinning}"
    )
    return [
        Row(
            "live overview: server CPU, fleet reporting, no page open",
            "ms/s",
            sum(base) / len(base),
            note=f"the server's CPU time per second while the fleet's events arrive; {context}",
        ),
        Row(
            f"live overview: its cost with {PAGES} pages open",
            "ms/s",
            cost_full,
            target=TARGET_COST_MS_PER_S,
            note=f"server CPU per second less the no-page phase's: rounds {', '.join(f'{v:.1f}' for v in full)}; "
            f"with one page {cost_one:.1f} ms/s (rounds {', '.join(f'{v:.1f}' for v in one)})",
        ),
        Row(
            "live overview: cost of each further open page",
            "µs/s",
            per_page_us,
            target=TARGET_PAGE_US_PER_S,
            note=f"({PAGES} pages' cost − one page's) ÷ {PAGES - 1}: a frame written every {INTERVAL} s, at most "
            f"{pages.frame_bytes / 1024:.1f} KiB",
        ),
        Row(
            f"live overview fan-out p99, first → last of {PAGES} pages",
            "ms",
            bench_fanout.pct(spreads, 99),
            target=TARGET_SPREAD_P99_MS,
            floor=f99,
            note=f"n={len(spreads)} updates; p50 {bench_fanout.pct(spreads, 50):.2f} ms; floor: plain PUBLISH → one "
            f"redis.asyncio subscriber, p99 of n={len(floor)}; every update reached every page",
        ),
        Row(
            f"live overview: figures' age at the last of {PAGES} pages, p99",
            "ms",
            bench_fanout.pct(ages, 99),
            target=TARGET_AGE_P99_MS,
            floor=f99,
            note=f"from the read of the figures to the last page's receipt (reads, render, fan-out); p50 "
            f"{bench_fanout.pct(ages, 50):.2f} ms, max {max(ages):.1f} ms",
        ),
    ]
