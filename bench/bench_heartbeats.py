"""Heartbeat capacity: how many heartbeats a second one server core takes at p99 under 50 ms.

The fleet is what production has at that rate: ``AGENTS`` agents, every one of them
heartbeating with metrics once per heartbeat interval (10 s), so 20,000 agents make 2,000
heartbeats a second. The load is open-loop: heartbeat ``i`` is due at ``i / rate`` seconds,
sent on one of ``CONNECTIONS`` keep-alive connections as soon as that connection is free,
and its latency is counted from when it was due, so a server that falls behind shows it in
the tail instead of slowing the load down (no coordinated omission). The load generator is
this process on core 0, raw HTTP over asyncio streams; the server is one uvicorn process on
core 1 (PostgreSQL and Redis unpinned).

Two designs of the same endpoint, in the same run, each at rising rates (``STEPS``), until
one misses (p99 over the target, or fewer answers than sent):

- **per request**: each heartbeat through Django on the HTTP threads, one statement each
  (``L10_HEARTBEAT_COALESCE_MS=0``);
- **coalesced**: valid heartbeats taken on the event loop and written together every few
  milliseconds, one statement per flush (docs/performance.md, "Heartbeat capacity").

Then the target run: the coalesced design at ``TARGET_RATE`` for ``TARGET_SECONDS``, with
its server CPU per heartbeat, which gives heartbeats per second per core.

Floors, raw psycopg over one connection, the same statements: the per-request heartbeat
statement one after another, and the coalesced statement in batches of the size the server
flushed. After each phase the minute rows are counted against the answers, so no figure is
reported for work not done.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import psycopg

from bench import common
from bench.bench_ingest import random_metrics
from bench.common import Row

DB_NAME = common.db_name("l10bench_heartbeats")
REDIS_DB = common.REDIS_DB
TENANT_SLUG = "bench-hb"
INTERVAL_S = 10  # the console's default L10_AGENT_HEARTBEAT_INTERVAL
TARGET_RATE = common.sized(2000, 100)  # heartbeats per second
AGENTS = TARGET_RATE * INTERVAL_S  # every agent heartbeats once per interval at the target rate
TARGET_P99_MS = 50.0
STEPS = common.sized((250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000), (50, 100))
STEP_SECONDS = common.sized(10.0, 2.0)
TARGET_SECONDS = common.sized(30.0, 3.0)
WARMUP_SECONDS = common.sized(3.0, 1.0)
CONNECTIONS = common.sized(128, 16)
# A phase that falls this far behind its schedule is over: the server cannot take the rate.
BEHIND_LIMIT_S = 3.0
FLUSH_MS = "10"  # the coalesced design's L10_HEARTBEAT_COALESCE_MS


@dataclass
class Phase:
    """What one phase at one offered rate measured."""

    rate: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    behind: bool = False

    @property
    def p50(self) -> float:
        return common.percentile(self.latencies_ms, 50) if self.latencies_ms else float("inf")

    @property
    def p99(self) -> float:
        return common.percentile(self.latencies_ms, 99) if self.latencies_ms else float("inf")

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @property
    def cpu_ms_each(self) -> float:
        return self.server_cpu_s * 1000 / max(1, self.answered)

    @property
    def kept_up(self) -> bool:
        return not self.behind and not self.failures and self.answered == self.sent and self.p99 <= TARGET_P99_MS


def _request(host: str, token: str, external_id: str, rng: random.Random) -> bytes:
    body = json.dumps({"state": "running", "metrics": random_metrics(rng)}).encode()
    head = (
        f"POST /api/v1/ingest/agents/{external_id}/heartbeat HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _offer(host: str, port: int, requests: list[bytes], rate: float, seconds: float, phase: Phase) -> None:
    """Send heartbeat ``i`` at ``i / rate`` s on the first free connection; stop after
    ``seconds`` or when the phase falls ``BEHIND_LIMIT_S`` behind."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    next_index = 0

    async def connection() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index < total and not phase.behind:
                i = next_index
                next_index += 1
                due = start + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif -wait > BEHIND_LIMIT_S:
                    phase.behind = True
                    return
                writer.write(requests[i % len(requests)])
                phase.sent += 1
                status, body = await _answer(reader)
                if status != 200 or b'"desired_state"' not in body:
                    phase.failures.append(f"{status}: {body[:200]!r}")
                    continue
                phase.latencies_ms.append((time.perf_counter() - due) * 1000)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))


def run_phase(base_url: str, pid: int, requests: list[bytes], rate: float, seconds: float) -> Phase:
    url = urlsplit(base_url)
    phase = Phase(rate=rate)
    cpu = common.cpu_seconds(pid)
    began = time.perf_counter()
    asyncio.run(_offer(url.hostname or common.HOST, url.port or 80, requests, rate, seconds, phase))
    phase.seconds = time.perf_counter() - began
    phase.server_cpu_s = common.cpu_seconds(pid) - cpu
    return phase


def _samples(tenant_id: int) -> int:
    with common.pg_connect(common.DB_NAME) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(samples), 0) FROM fleet_metricminute WHERE tenant_id = %s", [tenant_id]
        ).fetchone()
    return int(row[0]) if row else 0


def _agents_sql(conn: Any, tenant_id: int, count: int) -> None:
    conn.execute(common.AGENTS_SQL, {"tenant": tenant_id, "n": count})
    conn.execute("VACUUM ANALYZE fleet_agent")


def design(label: str, extra_env: dict[str, str], seed: common.Seed, requests: list[bytes]) -> list[Phase]:
    """The design at each rate of ``STEPS`` until it misses; every answer's row counted."""
    phases: list[Phase] = []
    with common.server(extra_env) as srv:
        run_phase(srv.base_url, srv.pid, requests, STEPS[0], WARMUP_SECONDS)
        for rate in STEPS:
            before = _samples(seed.tenant_id)
            phase = run_phase(srv.base_url, srv.pid, requests, rate, STEP_SECONDS)
            stored = _samples(seed.tenant_id) - before
            if stored != phase.answered:
                raise AssertionError(f"{label} at {rate}/s: {stored} samples stored, {phase.answered} answered")
            common.progress(
                f"{label}: {rate}/s offered, {phase.answered} answered, p50 {phase.p50:.1f} ms, p99 {phase.p99:.1f} ms, "
                f"server CPU {phase.cpu_ms_each:.2f} ms each{', fell behind' if phase.behind else ''}"
                f"{f', {len(phase.failures)} failed: {phase.failures[0]}' if phase.failures else ''}"
            )
            phases.append(phase)
            if not phase.kept_up:
                break
    return phases


def _best(phases: list[Phase]) -> Phase | None:
    kept = [p for p in phases if p.kept_up]
    return kept[-1] if kept else None


class _Reading(NamedTuple):
    cpu_percent: float | None
    memory_mb: float | None
    tokens: int
    requests: int
    errors: int
    latency_p95_ms: float | None


def _reading(rng: random.Random) -> _Reading:
    return _Reading(**random_metrics(rng))


def floors(seed: common.Seed, batch: int) -> tuple[float, float]:
    """Heartbeats per second through the console's own statements (``fleet.sql``) run by
    psycopg over one connection, without Django: one heartbeat per statement (the
    per-request design's) and ``batch`` per statement in a transaction (the coalesced)."""
    from bench.bench_fanout import django_setup

    django_setup()
    from fleet import sql as fleet_sql

    tenant = SimpleNamespace(pk=seed.tenant_id)
    agents = [f"worker-{k:05d}" for k in range(1, AGENTS + 1)]
    rng = random.Random(7)
    single_sql, batch_sql = fleet_sql._heartbeat_statement(True), fleet_sql.heartbeats_statement()
    count = common.sized(3000, 100)
    with common.pg_connect(common.DB_NAME, autocommit=True) as conn:
        conn.cursor_factory = psycopg.ClientCursor  # client-side binding, as Django's backend
        began = time.perf_counter()
        for i in range(count):
            now = datetime.now(UTC)
            r = _reading(rng)
            params = fleet_sql.heartbeat_fields(r, None, now)
            row = fleet_sql.minute_row(UUID(int=0), seed.tenant_id, now, r)
            params.update(tenant_id=seed.tenant_id, external_id=agents[i % len(agents)], state="running", now=now,
                          minute=row.minute, cpu=row.cpu_sum, mem=row.memory_sum, tokens=row.tokens,
                          requests=row.requests, errors=row.errors, p95=row.latency_p95_ms)  # fmt: skip
            if conn.execute(single_sql, params).fetchone() is None:
                raise AssertionError("floor: no agent")
        single = count / (time.perf_counter() - began)
        batches = max(1, common.sized(6000, 200) // batch)
        began = time.perf_counter()
        for b in range(batches):
            beats = [fleet_sql.Beat(tenant,  # type: ignore[arg-type]  # only its pk is read
                                    agents[(b * batch + j) % len(agents)], "running", _reading(rng), None)
                     for j in range(batch)]  # fmt: skip
            with conn.transaction():
                found = conn.execute(batch_sql, fleet_sql.heartbeats_params(beats, datetime.now(UTC))).fetchall()
            if len(found) != batch:
                raise AssertionError(f"floor: {len(found)} of {batch} agents")
        batched = batches * batch / (time.perf_counter() - began)
    return single, batched


def run() -> list[Row]:
    with common.own_stores(DB_NAME, REDIS_DB):
        return _run()


def _run() -> list[Row]:
    common.flush_redis()
    common.recreate_database()
    seed = common.seed_tenant(TENANT_SLUG)
    with common.pg_connect(common.DB_NAME, autocommit=True) as conn:
        _agents_sql(conn, seed.tenant_id, AGENTS)
    host = f"{common.HOST}"
    rng = random.Random(3)
    # Agents in a shuffled order, each once per interval: at the target rate each agent's
    # heartbeats are an interval apart, as the SDK sends them.
    order = [f"worker-{k:05d}" for k in range(1, AGENTS + 1)]
    rng.shuffle(order)
    requests = [_request(host, seed.token, external_id, rng) for external_id in order]
    common.progress(f"{AGENTS} agents, {len(requests)} distinct heartbeats, {CONNECTIONS} connections")

    per_request = design("per request", {"L10_HEARTBEAT_COALESCE_MS": "0"}, seed, requests)
    coalesced = design("coalesced", {"L10_HEARTBEAT_COALESCE_MS": FLUSH_MS}, seed, requests)
    with common.server({"L10_HEARTBEAT_COALESCE_MS": FLUSH_MS}) as srv:
        run_phase(srv.base_url, srv.pid, requests, TARGET_RATE, WARMUP_SECONDS)
        before = _samples(seed.tenant_id)
        target = run_phase(srv.base_url, srv.pid, requests, TARGET_RATE, TARGET_SECONDS)
        stored = _samples(seed.tenant_id) - before
        if stored != target.answered:
            raise AssertionError(f"target run: {stored} samples stored, {target.answered} answered")
        flushes = _flush_size(srv.base_url)
    single_floor, batch_floor = floors(seed, max(1, round(flushes)))

    rows: list[Row] = []
    for label, phases in (("per request", per_request), ("coalesced", coalesced)):
        best = _best(phases)
        missed = phases[-1] if phases and not phases[-1].kept_up else None
        rows.append(
            Row(
                f"{label}: highest rate kept (p99 < {TARGET_P99_MS:.0f} ms)",
                "heartbeats/s",
                best.rate if best else 0.0,
                better="higher",
                floor=single_floor if label == "per request" else batch_floor,
                floor_label="psycopg, the same statements",
                note=(
                    (
                        f"p50 {best.p50:.1f} ms, p99 {best.p99:.1f} ms, server CPU {best.cpu_ms_each:.2f} ms each; "
                        if best
                        else ""
                    )
                    + (
                        f"missed at {missed.rate:.0f}/s: p99 {missed.p99:.1f} ms, {missed.answered}/{missed.sent} answered"
                        f"{', fell behind' if missed.behind else ''}"
                        if missed
                        else "kept every step"
                    )
                ),
            )
        )
    per_core = 1000 / target.cpu_ms_each if target.answered else 0.0
    rows += [
        Row(
            f"coalesced at {TARGET_RATE}/s: p99",
            "ms",
            target.p99,
            target=TARGET_P99_MS,
            note=f"p50 {target.p50:.1f} ms; {target.answered}/{target.sent} answered in {target.seconds:.1f} s; "
            f"{AGENTS} agents, every one heartbeating every {INTERVAL_S} s; flushes of {flushes:.1f} heartbeats on average",
        ),
        Row(
            "coalesced: heartbeats/s per core (1 / server CPU per heartbeat)",
            "heartbeats/s",
            per_core,
            better="higher",
            target=float(TARGET_RATE),
            floor=batch_floor,
            note=f"server CPU {target.cpu_ms_each:.3f} ms per heartbeat at {TARGET_RATE}/s; "
            f"floor: the coalesced statement alone, batches of {max(1, round(flushes))}",
        ),
    ]
    pr_best = _best(per_request)
    if pr_best:
        rows.append(
            Row(
                "per request: heartbeats/s per core (1 / server CPU per heartbeat)",
                "heartbeats/s",
                1000 / pr_best.cpu_ms_each,
                better="higher",
                floor=single_floor,
                note=f"server CPU {pr_best.cpu_ms_each:.3f} ms per heartbeat at {pr_best.rate:.0f}/s; "
                "floor: the per-request statement alone, one after another",
            )
        )
    return rows


def _flush_size(base_url: str) -> float:
    """The coalesced design's mean heartbeats per flush, from the server's metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("l10_heartbeat_flush_size_sum"):
            total = float(line.split()[-1])
        elif line.startswith("l10_heartbeat_flush_size_count"):
            count = float(line.split()[-1])
    return total / count if count else 1.0
