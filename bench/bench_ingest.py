"""Ingest against PostgreSQL: heartbeat latency and batch metric throughput, each beside a floor.

1. Heartbeats. Sequential ``POST /api/v1/ingest/agents/{id}/heartbeat`` with metrics over
   one keep-alive connection. Floor: the same database work with raw psycopg over one
   autocommit connection from this process, the two statements the app runs on
   PostgreSQL: the token with its tenant, then one statement that updates the agent and
   merges its metric-minute row. API and floor run in alternating blocks so both see the
   same machine. A Redis PING is measured as context.
2. Batches. ``POST /api/v1/ingest/metrics`` with 1,000 samples per batch (the API limit;
   smaller in a small run), one sample per agent and minute, so every sample is a fresh
   row. Floor: the same rows written with psycopg ``COPY``, one batch per transaction at
   the same concurrency.

After each phase the rows in the database are counted against what was sent, so no figure
can be reported for work that was not done.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import redis

from bench import common
from bench.common import Row

# Heartbeats.
# Every heartbeat agent reports: HB_COUNT is many times HB_AGENTS at either size, so the timed
# loop reaches each of them (the agents with a heartbeat are counted after it), as every live
# agent of a fleet heartbeats.
HB_AGENTS = common.sized(100, 10)
HB_COUNT = common.sized(2000, 40)  # each, API and floor
HB_SECONDS = common.sized(30.0, 10.0)  # for API and floor together; the loop stops at whichever comes first
HB_BLOCK = common.sized(100, 10)  # API and floor alternate in blocks of this many
HB_WARMUP = common.sized(50, 5)
HB_TARGET_P99_MS = 15.0
PING_COUNT = common.sized(1000, 50)
PING_WARMUP = common.sized(50, 5)
# The server's heartbeat interval (L10_AGENT_HEARTBEAT_INTERVAL, default 10 s): rates per minute.
HEARTBEAT_INTERVAL_S = 10

# Batches.
# The batch agents report through the batches themselves: every batch carries a sample of
# each of them, so any batch that finishes makes every one of them a reporting agent.
BATCH_AGENTS = common.sized(1000, 50)
BATCH_SIZE = BATCH_AGENTS  # L10_INGEST_MAX_BATCH's default at full size; one sample per agent per batch
BATCH_MAX = common.sized(60, 6)
BATCH_SECONDS = common.sized(20.0, 10.0)
BATCH_WARMUP = common.sized(2, 1)
BATCH_THREADS = 2
BATCH_TARGET_PER_S = 20_000.0
# Minutes (before a base a day ago) of each batch set, far enough apart never to overlap.
# What goes through the API must lie inside the window a sample may be stamped in (the
# minute rows' retention, 3 days by default; docs/api.md); the COPY floor writes directly.
API_MINUTES, WARMUP_MINUTES, COPY_MINUTES = 0, 1_000, 20_000

TENANT_SLUG = "bench"

MERGE_COLUMNS = (
    "agent_id, tenant_id, minute, samples, cpu_sum, cpu_max, memory_sum, memory_max, tokens, requests, errors, "
    "latency_p95_ms"
)
# fleet.sql's minute merge, written out for one row: sums add, maxima keep the larger.
UPSERT_MINUTE = (
    f"INSERT INTO fleet_metricminute AS t ({MERGE_COLUMNS}) VALUES ({', '.join(['%s'] * 12)}) "  # noqa: S608
    "ON CONFLICT (agent_id, minute) DO UPDATE SET "
    "samples = t.samples + excluded.samples, cpu_sum = t.cpu_sum + excluded.cpu_sum, "
    "memory_sum = t.memory_sum + excluded.memory_sum, tokens = t.tokens + excluded.tokens, "
    "requests = t.requests + excluded.requests, errors = t.errors + excluded.errors, "
    "cpu_max = GREATEST(t.cpu_max, excluded.cpu_max), memory_max = GREATEST(t.memory_max, excluded.memory_max), "
    "latency_p95_ms = GREATEST(t.latency_p95_ms, excluded.latency_p95_ms)"
)
# tenancy.sql.api_token_by_hash and fleet.sql.heartbeat (with metrics), as plain statements.
AUTHENTICATE = (
    "SELECT k.id, k.revoked_at, k.last_used_at, t.id, t.slug, t.name, t.created_at "
    "FROM tenancy_apitoken AS k JOIN tenancy_tenant AS t ON t.id = k.tenant_id WHERE k.token_hash = %s"
)
HEARTBEAT = (
    "WITH previous AS (SELECT id, observed_state FROM fleet_agent "  # noqa: S608 - constants only
    "WHERE tenant_id = %(tenant_id)s AND external_id = %(external_id)s), "
    "agent AS (UPDATE fleet_agent AS a SET last_heartbeat_at = %(now)s, updated_at = %(now)s, "
    "cpu_percent = %(cpu)s, memory_mb = %(mem)s, latency_p95_ms = %(p95)s, tokens_per_min = %(tokens_pm)s, "
    "requests_per_min = %(requests_pm)s, errors_per_min = %(errors_pm)s, metrics_at = %(now)s, "
    "observed_state = %(state)s, "
    "observed_changed_at = CASE WHEN a.observed_state = %(state)s THEN a.observed_changed_at ELSE %(now)s END "
    "FROM previous WHERE a.id = previous.id "
    "RETURNING a.id, a.desired_state, a.version, a.quotas, previous.observed_state), "
    f"minute AS (INSERT INTO fleet_metricminute AS t ({MERGE_COLUMNS}) "
    "SELECT agent.id, %(tenant_id)s, %(minute)s, 1, %(cpu)s, %(cpu)s, %(mem)s, %(mem)s, %(tokens)s, "
    "%(requests)s, %(errors)s, %(p95)s FROM agent "
    f"{UPSERT_MINUTE[UPSERT_MINUTE.index('ON CONFLICT') :]}) "
    "SELECT id, desired_state, version, quotas, observed_state FROM agent"
)


def run() -> list[Row]:
    common.flush_redis()
    common.recreate_database()
    hb_api = [f"hb-{i:03d}" for i in range(HB_AGENTS)]
    hb_floor = [f"hbf-{i:03d}" for i in range(HB_AGENTS)]
    bulk = [f"bulk-{i:04d}" for i in range(BATCH_AGENTS)]
    seed = common.seed_tenant(TENANT_SLUG, bulk)
    with common.server() as srv:
        headers = {"Authorization": f"Bearer {seed.token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=srv.base_url, headers=headers, timeout=30.0) as client:
            for external_id in hb_api + hb_floor:  # registration through the API; warms the server
                response = client.post("/api/v1/ingest/register", json={"external_id": external_id})
                _expect(response, 201)
            rows = heartbeats(client, srv.pid, seed, hb_api, hb_floor)
        rows += batches(srv, headers, seed, bulk)
    return rows


# --- heartbeats -----------------------------------------------------------------------


def random_metrics(rng: random.Random) -> dict[str, Any]:
    return {
        "cpu_percent": round(rng.uniform(0, 100), 2),
        "memory_mb": round(rng.uniform(100, 4000), 1),
        "tokens": rng.randint(0, 5000),
        "requests": rng.randint(0, 50),
        "errors": rng.randint(0, 2),
        "latency_p95_ms": round(rng.uniform(10, 900), 1),
    }


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path}: {response.status_code}, "
            f"expected {status}: {response.text[:500]}"
        )


class FloorHeartbeat:
    """The heartbeat's database work with raw psycopg over one autocommit connection."""

    def __init__(self, tenant_id: int, token: str) -> None:
        self.conn = common.pg_connect(autocommit=True)
        # Client-side binding, as Django's PostgreSQL backend uses by default.
        self.conn.cursor_factory = psycopg.ClientCursor
        self.tenant_id = tenant_id
        self.digest = hashlib.sha256(token.encode()).hexdigest()

    def __call__(self, external_id: str, state: str, m: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        per_min = HEARTBEAT_INTERVAL_S / 60
        with self.conn.cursor() as cur:
            if cur.execute(AUTHENTICATE, (self.digest,)).fetchone() is None:
                raise AssertionError("floor: no token")
            params = {
                "tenant_id": self.tenant_id,
                "external_id": external_id,
                "state": state,
                "now": now,
                "minute": now.replace(second=0, microsecond=0),
                "cpu": m["cpu_percent"],
                "mem": m["memory_mb"],
                "p95": m["latency_p95_ms"],
                "tokens": m["tokens"],
                "requests": m["requests"],
                "errors": m["errors"],
                "tokens_pm": m["tokens"] / per_min,
                "requests_pm": m["requests"] / per_min,
                "errors_pm": m["errors"] / per_min,
            }
            if cur.execute(HEARTBEAT, params).fetchone() is None:
                raise AssertionError(f"floor: no agent {external_id}")

    def close(self) -> None:
        self.conn.close()


def _samples_of(tenant_id: int, external_ids: list[str]) -> tuple[int, int]:
    """(sum of samples in the minute rows, agents with a heartbeat) of these agents."""
    with common.pg_connect() as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(m.samples), 0) FROM fleet_metricminute m JOIN fleet_agent a "
            "        ON a.id = m.agent_id WHERE a.tenant_id = %(t)s AND a.external_id = ANY(%(ids)s)),"
            "       (SELECT count(*) FROM fleet_agent WHERE tenant_id = %(t)s AND external_id = ANY(%(ids)s)"
            "        AND last_heartbeat_at IS NOT NULL)",
            {"t": tenant_id, "ids": external_ids},
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def heartbeats(
    client: httpx.Client, server_pid: int, seed: common.Seed, hb_api: list[str], hb_floor: list[str]
) -> list[Row]:
    rng = random.Random(10)  # the same metrics every run
    floor = FloorHeartbeat(seed.tenant_id, seed.token)

    def api_one(i: int) -> float:
        body = json.dumps({"state": "running", "metrics": random_metrics(rng)}).encode()
        path = f"/api/v1/ingest/agents/{hb_api[i % len(hb_api)]}/heartbeat"
        start = time.perf_counter()
        response = client.post(path, content=body)
        elapsed = time.perf_counter() - start
        _expect(response, 200)
        if response.json().get("desired_state") != "running":
            raise AssertionError(f"heartbeat answer without the desired state: {response.text[:200]}")
        return elapsed * 1000

    def floor_one(i: int) -> float:
        m = random_metrics(rng)
        start = time.perf_counter()
        floor(hb_floor[i % len(hb_floor)], "running", m)
        return (time.perf_counter() - start) * 1000

    def healthz_one() -> float:
        start = time.perf_counter()
        response = client.get("/healthz")
        elapsed = time.perf_counter() - start
        _expect(response, 200)
        return elapsed * 1000

    try:
        for i in range(HB_WARMUP):
            api_one(i)
            floor_one(i)
            healthz_one()
        api_before, _ = _samples_of(seed.tenant_id, hb_api)
        floor_before, _ = _samples_of(seed.tenant_id, hb_floor)

        api_ms: list[float] = []
        floor_ms: list[float] = []
        healthz_ms: list[float] = []
        server_cpu = 0.0
        deadline = time.monotonic() + HB_SECONDS
        # API, floor and the bare framework take turns in blocks, so all three see the same machine.
        while len(api_ms) < HB_COUNT and time.monotonic() < deadline:
            cpu = common.cpu_seconds(server_pid)
            for _ in range(min(HB_BLOCK, HB_COUNT - len(api_ms))):
                api_ms.append(api_one(len(api_ms)))
            server_cpu += common.cpu_seconds(server_pid) - cpu
            for _ in range(min(HB_BLOCK, HB_COUNT - len(floor_ms))):
                floor_ms.append(floor_one(len(floor_ms)))
            for _ in range(HB_BLOCK):
                healthz_ms.append(healthz_one())
    finally:
        floor.close()

    api_after, api_agents = _samples_of(seed.tenant_id, hb_api)
    floor_after, floor_agents = _samples_of(seed.tenant_id, hb_floor)
    assert api_after - api_before == len(api_ms), f"API heartbeats: {api_after - api_before} stored, {len(api_ms)} sent"
    assert floor_after - floor_before == len(floor_ms), "floor heartbeats were not all stored"
    # Heartbeat i goes to agent i % HB_AGENTS, in the warm-up and again in the timed loop.
    assert api_agents == min(len(hb_api), max(HB_WARMUP, len(api_ms))), f"{api_agents} agents have a heartbeat"
    assert floor_agents == min(len(hb_floor), max(HB_WARMUP, len(floor_ms)))

    ping_ms = _redis_ping()
    p50, p99 = common.percentile(api_ms, 50), common.percentile(api_ms, 99)
    return [
        Row(
            "heartbeat p50",
            "ms",
            p50,
            floor=common.percentile(floor_ms, 50),
            note=f"n={len(api_ms)} sequential over one keep-alive connection, {len(hb_api)} agents; "
            f"server CPU {server_cpu * 1000 / len(api_ms):.2f} ms per heartbeat; "
            f"floor: n={len(floor_ms)}, psycopg, one autocommit connection, the token SELECT + the one heartbeat statement",
        ),
        Row(
            "heartbeat p99",
            "ms",
            p99,
            target=HB_TARGET_P99_MS,
            floor=common.percentile(floor_ms, 99),
            note=f"p90 {common.percentile(api_ms, 90):.2f} ms, max {max(api_ms):.2f} ms; "
            f"floor p90 {common.percentile(floor_ms, 90):.2f} ms, max {max(floor_ms):.2f} ms",
        ),
        Row(
            "GET /healthz p50 (context)",
            "ms",
            common.percentile(healthz_ms, 50),
            note=f"the ASGI + middleware path without a database; n={len(healthz_ms)}, "
            f"p99 {common.percentile(healthz_ms, 99):.2f} ms",
        ),
        Row(
            "Redis PING p50 (context)",
            "ms",
            common.percentile(ping_ms, 50),
            note=f"n={len(ping_ms)}, p99 {common.percentile(ping_ms, 99):.3f} ms",
        ),
    ]


def _redis_ping() -> list[float]:
    client = redis.Redis(host=common.HOST, port=common.REDIS_PORT, db=common.REDIS_DB)
    try:
        for _ in range(PING_WARMUP):
            client.ping()
        out = []
        for _ in range(PING_COUNT):
            start = time.perf_counter()
            client.ping()
            out.append((time.perf_counter() - start) * 1000)
        return out
    finally:
        client.close()


# --- batches --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    agent: int  # index into the bulk agents
    at: datetime
    cpu: float
    mem: float
    tokens: int
    requests: int
    errors: int
    p95: float


def _batch(rng: random.Random, minute: datetime) -> list[Sample]:
    out = []
    for agent in range(BATCH_AGENTS):
        m = random_metrics(rng)
        at = minute + timedelta(seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999_999))
        out.append(
            Sample(
                agent,
                at,
                m["cpu_percent"],
                m["memory_mb"],
                m["tokens"],
                m["requests"],
                m["errors"],
                m["latency_p95_ms"],
            )
        )
    return out


def _json_body(samples: list[Sample], bulk: list[str]) -> bytes:
    return json.dumps(
        {
            "samples": [
                {
                    "external_id": bulk[s.agent],
                    "at": s.at.isoformat(),
                    "cpu_percent": s.cpu,
                    "memory_mb": s.mem,
                    "tokens": s.tokens,
                    "requests": s.requests,
                    "errors": s.errors,
                    "latency_p95_ms": s.p95,
                }
                for s in samples
            ]
        }
    ).encode()


def _copy_text(samples: list[Sample], agent_ids: list[str], tenant_id: int, shift: timedelta) -> bytes:
    """The same rows the API writes (one sample each), shifted to other minutes, as COPY text."""
    lines = []
    for s in samples:
        minute = (s.at + shift).replace(second=0, microsecond=0).isoformat()
        lines.append(
            f"{agent_ids[s.agent]}\t{tenant_id}\t{minute}\t1\t{s.cpu!r}\t{s.cpu!r}\t{s.mem!r}\t{s.mem!r}\t"
            f"{s.tokens}\t{s.requests}\t{s.errors}\t{s.p95!r}\n"
        )
    return "".join(lines).encode()


def _minute_rows(tenant_id: int, first: datetime, last: datetime) -> tuple[int, int]:
    """(rows, sum of samples) of the tenant's minute rows from ``first`` to ``last``."""
    with common.pg_connect() as conn:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(samples), 0) FROM fleet_metricminute "
            "WHERE tenant_id = %s AND minute BETWEEN %s AND %s",
            (tenant_id, first, last),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _concurrently(count: int, seconds: float, threads: int, work: Any) -> tuple[list[float], float]:
    """Run ``work(worker, i)`` for i in 0..count-1 on ``threads`` threads until done or the
    time is up; returns (the latency of each, in ms) and the wall time in seconds."""
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    failures: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        try:
            with work(n) as do:
                while True:
                    with lock:
                        i = state["next"]
                        if i >= count or time.monotonic() >= deadline or failures:
                            return
                        state["next"] = i + 1
                    start = time.perf_counter()
                    do(i)
                    elapsed = (time.perf_counter() - start) * 1000
                    with lock:
                        latencies.append(elapsed)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    pool = [threading.Thread(target=worker, args=(n,), name=f"bench-{n}") for n in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise failures[0]
    return latencies, wall


def batches(srv: common.Server, headers: dict[str, str], seed: common.Seed, bulk: list[str]) -> list[Row]:
    base_url = srv.base_url
    rng = random.Random(20)
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)

    def minute(offset: int, b: int) -> datetime:
        return base - timedelta(minutes=offset + b + 1)

    timed = [_batch(rng, minute(API_MINUTES, b)) for b in range(BATCH_MAX)]
    bodies = [_json_body(samples, bulk) for samples in timed]
    warmup = [_json_body(_batch(rng, minute(WARMUP_MINUTES, b)), bulk) for b in range(BATCH_WARMUP)]

    class Poster:
        def __init__(self, n: int) -> None:
            self.client = httpx.Client(base_url=base_url, headers=headers, timeout=60.0)

        def __enter__(self) -> Any:
            return self.post

        def __exit__(self, *exc: object) -> None:
            self.client.close()

        def post(self, i: int) -> None:
            response = self.client.post("/api/v1/ingest/metrics", content=bodies[i])
            _expect(response, 200)
            if response.json() != {"accepted": BATCH_SIZE, "duplicates": 0}:
                raise AssertionError(f"batch {i}: {response.text[:200]}")

    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
        for body in warmup:
            _expect(client.post("/api/v1/ingest/metrics", content=body), 200)
    cpu = common.cpu_seconds(srv.pid)
    api_ms, api_wall = _concurrently(BATCH_MAX, BATCH_SECONDS, BATCH_THREADS, Poster)
    server_cpu = common.cpu_seconds(srv.pid) - cpu
    done = len(api_ms)
    assert done > 0, "no batch finished in time"
    rows, stored = _minute_rows(seed.tenant_id, minute(API_MINUTES, BATCH_MAX - 1), minute(API_MINUTES, 0))
    assert rows == done * BATCH_SIZE, f"API batches: {rows} minute rows stored, {done * BATCH_SIZE} samples sent"
    assert stored == done * BATCH_SIZE, f"API batches: {stored} samples stored, {done * BATCH_SIZE} sent"
    api_rate = done * BATCH_SIZE / api_wall

    # Floor: the same rows (the first `done` batches) with COPY, shifted to fresh minutes.
    with common.pg_connect() as conn:
        ids = dict(
            conn.execute(
                "SELECT external_id, id::text FROM fleet_agent WHERE tenant_id = %s AND external_id = ANY(%s)",
                (seed.tenant_id, bulk),
            ).fetchall()
        )
    agent_ids = [ids[x] for x in bulk]
    shift = -timedelta(minutes=COPY_MINUTES)
    copies = [_copy_text(samples, agent_ids, seed.tenant_id, shift) for samples in timed[:done]]

    class Copier:
        def __init__(self, n: int) -> None:
            self.conn = common.pg_connect()

        def __enter__(self) -> Any:
            return self.copy

        def __exit__(self, *exc: object) -> None:
            self.conn.close()

        def copy(self, i: int) -> None:
            with self.conn.cursor() as cur, cur.copy(f"COPY fleet_metricminute ({MERGE_COLUMNS}) FROM STDIN") as copy:
                copy.write(copies[i])
            self.conn.commit()

    floor_ms, floor_wall = _concurrently(done, BATCH_SECONDS * 2, BATCH_THREADS, Copier)
    copied = len(floor_ms)
    rows, stored = _minute_rows(
        seed.tenant_id, minute(API_MINUTES + COPY_MINUTES, BATCH_MAX - 1), minute(API_MINUTES + COPY_MINUTES, 0)
    )
    assert copied > 0, "COPY wrote no batch in time"
    assert rows == stored == copied * BATCH_SIZE, f"COPY: {rows} rows stored, {copied * BATCH_SIZE} written"
    floor_rate = copied * BATCH_SIZE / floor_wall

    threads = f"{BATCH_THREADS} client threads"
    return [
        Row(
            "metric batch ingest",
            "samples/s",
            api_rate,
            better="higher",
            target=BATCH_TARGET_PER_S,
            floor=floor_rate,
            note=f"{done} batches of {BATCH_SIZE} in {api_wall:.2f} s, {threads}, every sample a new minute row; "
            f"server CPU {server_cpu * 1000 / done:.0f} ms per batch ({server_cpu / api_wall:.0%} of its core); "
            f"floor: {copied} of the same batches by COPY, one per transaction, {threads}",
        ),
        Row(
            f"metric batch ({BATCH_SIZE}) p50",
            "ms",
            common.percentile(api_ms, 50),
            floor=common.percentile(floor_ms, 50),
            note=f"per request under {threads}; p99 {common.percentile(api_ms, 99):.1f} ms",
        ),
    ]
