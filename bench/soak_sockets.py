"""Soak: 1,000 idle sockets on one server for ten minutes, pinged and fed events.

Usage: ``make soak``, or ``.venv/bin/python bench/soak_sockets.py [seconds]``; the length
is the argument, else ``SOAK_SECONDS``, else 600. Not part of ``make test`` or
``make bench``: it takes ten minutes and catches what only time shows (an idle
subscription that dies after the client library's socket timeout, memory that grows:
docs/performance.md, "Sockets").

- The console: one uvicorn process on core 1 with PostgreSQL and Redis (its own database
  and Redis database, so a soak never drops a benchmark's), with
  ``L10_WS_HEARTBEAT_INTERVAL`` at ``HEARTBEAT_INTERVAL`` seconds so pings flow, and
  ``L10_WS_MAX_CONNECTIONS`` raised so the cap is not what is tested.
- The sockets: this process (core 0), the clients of ``bench_fanout``: ``SOCKETS`` sockets
  to ``/ws/events`` with the tenant's API token, subscribed to ``agent.state.changed``,
  answering every ping with a pong.
- The load: ``PUBLISH_RATE`` events per second published from this process with
  ``realtime.hub.send_payloads`` for the whole soak.

Checks (the exit code is 1 when one fails): no socket closed; every socket received every
event published (none lost, none twice); every socket was pinged about as often as the
interval says; the server's ``VmRSS`` at the end is within ``TARGET_DRIFT_PERCENT`` of its
``VmRSS`` one minute in.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import platform
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.bench_fanout import (  # noqa: E402
    TOPIC,
    Client,
    Sockets,
    Tracker,
    describe_drops,
    describe_rounds,
    django_setup,
    event_data,
    pct,
    ping_rounds,
    rss_mb,
    run_loop,
    ws_url,
)
from bench.common import Row  # noqa: E402
from bench.run import print_rows  # noqa: E402

SOCKETS = 1000
DEFAULT_SECONDS = 600
HEARTBEAT_INTERVAL = 5  # the server's ping interval during the soak, in seconds
PUBLISH_RATE = 2.0  # events per second
RSS_BASELINE_SECONDS = 60.0  # the "one minute in" RSS reading
RSS_EVERY = 5.0  # seconds between two RSS readings
PROGRESS_EVERY = 30.0
DRAIN_SECONDS = 10.0  # after the last publish, for the last events to arrive
TARGET_DRIFT_PERCENT = 10.0
SERVER_MAX_CONNECTIONS = 5000
TENANT_SLUG = "soak"
DB_NAME = "l10bench_soak"
REDIS_DB = 12  # benchmarks use 14 (and the dashboard's 13), the test suite 15


def soak_seconds(argv: list[str]) -> float:
    raw = argv[0] if argv else os.environ.get("SOAK_SECONDS", str(DEFAULT_SECONDS))
    try:
        seconds = float(raw)
    except ValueError:
        raise SystemExit(f"the soak's length must be a number of seconds, not {raw!r}") from None
    if seconds < 2 * HEARTBEAT_INTERVAL:
        raise SystemExit(f"a soak shorter than {2 * HEARTBEAT_INTERVAL} s tests nothing")
    return seconds


@dataclass
class Soaked:
    seconds: float
    connect_s: float
    clients: list[Client]
    drops: list[Client]
    published: int
    publish_failed: int
    late_publishes: int
    delivery_ms: list[float]
    quiet_ms: list[float]  # the same, of the events no ping arrived during
    incomplete: int  # events that had not reached every socket after the drain
    rss_before: float  # before the first socket
    rss: list[tuple[float, float]]  # (seconds into the soak, MB)
    rss_baseline: tuple[float, float]
    rss_end: float
    server_cpu: float
    foreign: int
    rounds: list[tuple[int, float]]


async def soak(url: str, token: str, tenant_id: int, pid: int, seconds: float) -> Soaked:
    from realtime import hub

    tracker = Tracker(nonce=secrets.token_hex(8), expected=SOCKETS)
    sockets = Sockets(ws_url(url), TENANT_SLUG, token, tracker)
    sockets.on_drop = lambda c: common.progress(f"DROPPED {c.describe()}")
    rss_before = rss_mb(pid)
    common.progress(f"opening {SOCKETS} sockets")
    connect_s = await sockets.open(SOCKETS)
    common.progress(
        f"{SOCKETS} sockets open in {connect_s:.1f} s; soaking {seconds:.0f} s: pings every {HEARTBEAT_INTERVAL} s, "
        f"{PUBLISH_RATE:g} events/s"
    )
    # One minute in; in a soak too short for that, half way.
    baseline_at = RSS_BASELINE_SECONDS if seconds > RSS_BASELINE_SECONDS + RSS_EVERY else seconds / 2
    sent: dict[int, float] = {}  # seq → when it was published
    failed = late = 0
    rss: list[tuple[float, float]] = [(0.0, rss_mb(pid))]  # with every socket open
    baseline: tuple[float, float] | None = None
    try:
        cpu, began = common.cpu_seconds(pid), time.perf_counter()
        period = 1 / PUBLISH_RATE
        next_rss = RSS_EVERY
        next_progress = PROGRESS_EVERY
        k = 0
        while True:
            due = k * period
            now = time.perf_counter() - began
            if due >= seconds:
                break
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > period:
                late += 1
            payload = hub.encode(TOPIC, event_data(tracker.nonce, k))
            t0 = time.perf_counter()
            seqs = hub.send_payloads(tenant_id, [payload])
            if seqs:
                sent[seqs[0]] = t0
            else:
                failed += 1
            k += 1
            now = time.perf_counter() - began
            if baseline is None and now >= baseline_at:
                baseline = (now, rss_mb(pid))
                rss.append(baseline)
            if now >= next_rss:
                rss.append((now, rss_mb(pid)))
                next_rss += RSS_EVERY
            if now >= next_progress:
                next_progress += PROGRESS_EVERY
                common.progress(
                    f"{now:.0f} s: {SOCKETS - len(sockets.drops)} sockets open, {len(sent)} events published, "
                    f"server RSS {rss[-1][1]:.1f} MB, fewest pings {min(c.pings for c in sockets.clients)}"
                )
        # The last events: wait until every socket has them (or the drain's deadline).
        drain_until = time.perf_counter() + DRAIN_SECONDS
        while time.perf_counter() < drain_until and any(tracker.count.get(s, 0) < SOCKETS for s in sent):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
        server_cpu = (common.cpu_seconds(pid) - cpu) / elapsed
        rss_end = rss_mb(pid)
        rss.append((elapsed, rss_end))
        drops = sockets.drops
    finally:
        await sockets.close()
    assert baseline is not None
    complete = [s for s in sent if tracker.count.get(s, 0) >= SOCKETS]
    pinged = sorted(sockets.ping_times)

    def quiet(seq: int) -> bool:
        """No ping arrived while this event was on its way."""
        k = bisect.bisect_left(pinged, sent[seq])
        return k == len(pinged) or pinged[k] > tracker.last[seq]

    return Soaked(
        seconds=elapsed,
        connect_s=connect_s,
        clients=sockets.clients,
        drops=drops,
        published=len(sent),
        publish_failed=failed,
        late_publishes=late,
        delivery_ms=[(tracker.last[s] - sent[s]) * 1000 for s in complete],
        quiet_ms=[(tracker.last[s] - sent[s]) * 1000 for s in complete if quiet(s)],
        incomplete=len(sent) - len(complete),
        rss_before=rss_before,
        rss=rss,
        rss_baseline=baseline,
        rss_end=rss_end,
        server_cpu=server_cpu,
        foreign=tracker.foreign,
        rounds=ping_rounds(sockets.ping_times),
    )


def rows(s: Soaked) -> list[Row]:
    received = [c.events for c in s.clients]
    fewest, most = min(received), max(received)
    pings = [c.pings for c in s.clients]
    # The first ping comes one interval after the hub starts, and the last may miss the end.
    expected_pings = max(1, int(s.seconds // HEARTBEAT_INTERVAL) - 2)
    base_at, base = s.rss_baseline
    drift = 100 * (s.rss_end - base) / base
    sizes = [mb for _, mb in s.rss]
    return [
        Row(
            f"soak: sockets open, {s.seconds:.0f} s",
            "sockets",
            float(len(s.clients) - len(s.drops)),
            better="higher",
            target=float(SOCKETS),
            note=f"{len(s.clients)} opened in {s.connect_s:.1f} s; at the end {len(s.clients) - len(s.drops)} open",
        ),
        Row(
            "soak: disconnects",
            "sockets",
            float(len(s.drops)),
            target=0.0,
            note=f"sockets the server (or the network) closed during the soak: {describe_drops(s.drops)}",
        ),
        Row(
            "soak: events lost, worst socket",
            "events",
            float(s.published - fewest),
            target=0.0,
            note=f"{s.published} events published ({PUBLISH_RATE:g}/s, {s.publish_failed} publishes failed, "
            f"{s.late_publishes} sent more than a period late); each socket received between {fewest} and {most} "
            f"(more than published means duplicates); {s.incomplete} events short of all {SOCKETS} sockets after "
            f"a {DRAIN_SECONDS:.0f} s drain; {sum(c.resyncs for c in s.clients)} resyncs; {s.foreign} events of "
            f"another publisher ignored",
        ),
        Row(
            "soak: events duplicated, worst socket",
            "events",
            float(max(0, most - s.published)),
            target=0.0,
        ),
        Row(
            "soak: pings answered, fewest on a socket",
            "pings",
            float(min(pings)),
            better="higher",
            target=float(expected_pings),
            note=f"server pings every {HEARTBEAT_INTERVAL} s, each answered with a pong: per socket between "
            f"{min(pings)} and {max(pings)}; {describe_rounds(s.rounds)}; unexpected frames "
            f"{[e for c in s.clients for e in c.errors][:3] or 'none'}",
        ),
        Row(
            "soak: delivery p99, publish → last socket",
            "ms",
            pct(s.delivery_ms, 99),
            note=f"context: p50 {pct(s.delivery_ms, 50):.2f} ms, max {max(s.delivery_ms, default=0.0):.1f} ms over "
            f"{len(s.delivery_ms)} events; the {len(s.quiet_ms)} no ping arrived during: p50 "
            f"{pct(s.quiet_ms, 50):.2f} ms, p99 {pct(s.quiet_ms, 99):.2f} ms; server CPU {s.server_cpu:.0%} of its core",
        ),
        Row(
            f"soak: server RSS at {base_at:.0f} s",
            "MB",
            base,
            note=f"uvicorn VmRSS with {SOCKETS} sockets; {s.rss_before:.1f} MB before the first socket, "
            f"{sizes[0]:.1f} MB when all were open",
        ),
        Row(
            "soak: server RSS at the end",
            "MB",
            s.rss_end,
            floor=base,
            note=f"floor: the reading at {base_at:.0f} s; every {RSS_EVERY:.0f} s it was between "
            f"{min(sizes):.1f} and {max(sizes):.1f} MB",
        ),
        Row(
            f"soak: server RSS drift, {base_at:.0f} s → end",
            "%",
            drift,
            target=TARGET_DRIFT_PERCENT,
        ),
    ]


def main(argv: list[str]) -> int:
    seconds = soak_seconds(argv)
    pinning = common.pin_client()
    started = time.monotonic()
    with common.own_stores(DB_NAME, REDIS_DB):
        common.flush_redis()
        common.recreate_database()
        seed = common.seed_tenant(TENANT_SLUG)
        django_setup()
        extra = {
            "L10_WS_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "L10_WS_MAX_CONNECTIONS": str(SERVER_MAX_CONNECTIONS),
        }
        with common.server(extra) as srv:
            soaked: Soaked = run_loop(soak(srv.base_url, seed.token, seed.tenant_id, srv.pid, seconds))
    result = rows(soaked)

    print()
    print(f"L10 soak: CPython {platform.python_version()}, {common.server_version()}")
    print(f"{pinning}; everything on {common.HOST}; {time.monotonic() - started:.0f} s in all")
    print()
    print_rows(result)
    failed = [r.figure for r in result if r.passed is False]
    print()
    if failed:
        print(f"FAILED checks: {', '.join(failed)}")
        return 1
    print("All checks passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
