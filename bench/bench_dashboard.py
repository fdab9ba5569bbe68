"""The dashboard's pages against PostgreSQL at fleet scale, each beside its raw-SQL floor.

The targets: 10,000 agents, every live one reporting (writing minute rows) as in
production; overview uncached p95 under 50 ms (under 100 ms past 10,000 agents; the
documented SLA is 500 ms), cached p95 under 5 ms (SLA: 50 ms), agent list p95 under 50 ms
and under 40 ms with a label filter, agent detail with a 24 h chart p95 under 100 ms, the
cached list and detail under 4 and 5 ms of server CPU, and cached pages served at 32
clients at least as fast as at 8; the floor is the same queries in raw SQL. ``L10_BENCH_AGENTS`` sets another
fleet size; ``bench/run.py --growth dashboard`` runs the table at each size of ``GROWTH``
and prints the figures side by side.

Data (its own PostgreSQL database and Redis database, so it can run beside the other
benchmarks): after ``migrate``, a tenant, a viewer member, and through psycopg ``COPY``
10,000 agents (varied states, desired states, labels and latest metrics; the live ones,
about 7,500, have ``metrics_at`` an hour ahead, so the same agents count as live for the
whole run), per-minute rows for every live agent: 1,000 detail agents from 24 h before the
load to 30 minutes after it, the others from ``RECENT_MINUTES`` (2 h) before it to the same
end (every 1 h and 24 h window the run reads is full: checked), written minute by minute
as ingestion writes them (so the heap holds a minute's rows together and an agent's rows
apart, as in production), and 20 events each for the 1,000. Then
``fleet.rollups.rollup_range`` builds that span's hour rows and 5-minute fleet buckets,
timed; then ``VACUUM ANALYZE`` and a ``CHECKPOINT`` (so the load's writes are not flushed
during the first phase). Every table is counted before anything is measured.

Pages: sequential GETs over one keep-alive connection to uvicorn (core 1) from this
process (core 0), logged in as the member through the login form. "Uncached" means every
request misses: before each one this process bumps the tenant's cache generation with a
Redis ``INCR`` of ``l10:1:tgen:<tenant>`` (the key ``core.tenant_cache`` reads), so
the request takes the path of the first viewer after a state change (generation lookups,
misses, the queries, the rendering, the cache writes). After each phase the cache entries
are counted: an uncached phase must have stored one new entry per request, a cached phase
none. Every response is checked (status 200; the counts, the chart points, the rows shown).

Floors: the same queries with psycopg over one connection (autocommit), written out from
the selectors; the fleet chart query is the app's own (``fleet.sql.FLEET_MINUTES_SQL``).
The cached overview's floor is a Redis GET of the cached overview entry. Page and floor
run in alternating blocks so both see the same machine.

The machine is shared: a context row says how busy the server's core was while measuring
and how much of that was the server, so a run disturbed by other processes shows it.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import redis
from psycopg.types.json import Jsonb

from bench import common
from bench.common import Row

DB_NAME = common.db_name("l10bench_dashboard")
REDIS_DB = common.redis_db(13)

# The data. The fleet's size: ``L10_BENCH_AGENTS`` (``make bench AGENTS=50000``), else 10,000;
# ``bench/run.py --growth dashboard`` runs it at each of GROWTH.
AGENTS = common.sized(common.bench_agents(10_000), 300)
GROWTH = common.sized((1_000, 10_000, 50_000), (200, 400))
DAY_MINUTES = 24 * 60
# Every live agent reports, as in production, so every live agent has minute rows. The
# detail agents (the pages of phase 4) have the whole day; the other live agents have
# RECENT_MINUTES before the load (the 1 h chart's window, with room for the run) and
# AHEAD_MINUTES after it. A whole day for all of them would be 7.5 times the rows of the
# detail agents' day at 10,000 agents (11 million rows), minutes of COPY and rollup for
# rows no page of the run reads: the 24 h overview reads the 5-minute fleet buckets, whose
# count (one per 5 minutes) does not depend on how many agents fed them.
RECENT_MINUTES = 120
AHEAD_MINUTES = 30  # minute rows past the load time, so the run's windows stay full
EVENTS_PER_AGENT = 20
CONTROL_EVENTS_PER_AGENT = 3
TENANT_SLUG = "bench-dash"
USERNAME = "bench-viewer"
TEAMS = ("search", "ads", "billing", "infra", "ml", "support", "growth", "data")
ROLES = ("crawler", "ranker", "indexer", "planner", "worker")
ENVS = ("prod", "staging", "dev")
REGIONS = ("eu-west", "us-east", "ap-south")
STATES = (
    ("running", 0.70),
    ("paused", 0.08),
    ("stopped", 0.07),
    ("error", 0.05),
    ("unresponsive", 0.05),
    ("starting", 0.05),
)
LIVE_STATES = ("running", "error")
PENDING_SHARE = 0.03  # agents told something they have not done yet
FILTER_LABEL = ("team", "search")
FILTER_SORT = "-cpu"

# The app's settings these mirror (L10_AGENT_HEARTBEAT_INTERVAL, dashboard.views.PAGE_SIZE).
HEARTBEAT_INTERVAL_S = 10
PAGE_SIZE = 50
LATEST_EVENTS, LATEST_CONTROL = 15, 10

# The loops: each phase stops at COUNT requests or SECONDS (page and floor together).
WARMUP = common.sized(10, 2)
BLOCK = common.sized(25, 5)
UNCACHED_COUNT, UNCACHED_SECONDS = common.sized((300, 45.0), (15, 5.0))
CACHED_COUNT, CACHED_SECONDS = common.sized((2_000, 20.0), (40, 3.0))
CONTEXT_COUNT, CONTEXT_SECONDS = common.sized((150, 20.0), (10, 3.0))
# Throughput of cached pages at each concurrency: CONCURRENCY[-1] must serve at least as
# many pages a second as CONCURRENCY[-2] (more clients waiting must not cost more per page).
CONCURRENCY = (1, 8, 32)
LOW, HIGH = CONCURRENCY[-2:]
THROUGHPUT_SECONDS = common.sized(16.0, 2.0)  # at each concurrency, in all
THROUGHPUT_ROUNDS = 4
THROUGHPUT_HOLDS = 0.97  # "does not fall", within the few per cent two runs differ by on this machine

TARGET_OVERVIEW_MS = {10_000: 50.0, 50_000: 100.0}  # by fleet size: the smallest size at or above it
TARGET_CACHED_MS = 5.0
TARGET_LIST_MS, TARGET_FILTERED_MS = 50.0, 40.0
TARGET_DETAIL_MS = 100.0
TARGET_LIST_CPU_MS, TARGET_DETAIL_CPU_MS = 4.0, 5.0  # server CPU per cached page
SLA_OVERVIEW_MS, SLA_CACHED_MS = 500.0, 50.0


# --- its own stores --------------------------------------------------------------------


def _pg(*, autocommit: bool = True) -> psycopg.Connection[Any]:
    return common.pg_connect(DB_NAME, autocommit=autocommit)


def _django(code: str, spec: dict[str, Any], *, timeout: float = 900) -> dict[str, Any]:
    """Run ``code`` in ``manage.py shell`` with ``spec`` in BENCH_SPEC; its ``L10BENCH {json}`` line."""
    out = common.manage(
        "shell", "--no-imports", "-c", code, extra_env={"BENCH_SPEC": json.dumps(spec)}, timeout=timeout
    )
    for line in out.splitlines():
        if line.startswith("L10BENCH "):
            data: dict[str, Any] = json.loads(line.removeprefix("L10BENCH "))
            return data
    raise RuntimeError(f"the Django script printed no result:\n{out}")


# --- the data ----------------------------------------------------------------------------

SETUP_CODE = """
import json, os
from django.contrib.auth import get_user_model
from tenancy.models import Membership, Role, Tenant
spec = json.loads(os.environ["BENCH_SPEC"])
tenant = Tenant.objects.create(slug=spec["slug"], name="Bench dashboard")
user = get_user_model().objects.create_user(spec["username"], password=spec["password"])
Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)
print("L10BENCH " + json.dumps({"tenant_id": tenant.pk, "user_id": user.pk}))
"""

ROLLUP_CODE = """
import json, os, time
from datetime import datetime
from fleet.rollups import fleet_minutes_folded, rollup_range
spec = json.loads(os.environ["BENCH_SPEC"])
begun = time.perf_counter()
start, end = datetime.fromisoformat(spec["start"]), datetime.fromisoformat(spec["end"])
written = rollup_range(start, end)
fleet_minutes_folded(start, end)  # as the routine run records it, so charts read the folded minutes
print("L10BENCH " + json.dumps({"written": written, "seconds": time.perf_counter() - begun}))
"""

AGENT_COLUMNS = (
    "id, tenant_id, external_id, name, labels, desired_state, desired_changed_at, desired_changed_by_id, version, "
    "quotas, observed_state, observed_changed_at, last_heartbeat_at, cpu_percent, memory_mb, latency_p95_ms, "
    "tokens_per_min, requests_per_min, errors_per_min, metrics_at, registered_at, updated_at, "
    "delivered_version, pause_reason, pause_mode"
)
# Columns the seeded agents all share: nothing delivered yet, no pause.
AGENT_DEFAULTS = (0, "", "after_task")
MINUTE_COLUMNS = (
    "agent_id, tenant_id, minute, samples, cpu_sum, cpu_max, memory_sum, memory_max, tokens, requests, errors, "
    "latency_p95_ms"
)
EVENT_COLUMNS = "tenant_id, agent_id, uid, type, severity, message, data, occurred_at, received_at"


def detail_agents(agents: int) -> int:
    """How many agents have a whole day of minute rows (the pages phase 4 reads): 1,000."""
    return common.sized(min(1_000, agents // 10), 20)


@dataclass
class Seeded:
    tenant_id: int
    password: str
    agents: int  # the tenant's agents
    chart_agents: list[uuid.UUID]  # the detail agents: a day of minute rows each
    names: dict[uuid.UUID, str]
    live: int  # agents whose metrics are fresh for the whole run; each has minute rows
    search_agents: int  # agents labelled team=search
    first_minute: datetime
    minutes: int  # minute rows per detail agent
    recent_minutes: int  # minute rows per other live agent, the last of them at the same minute
    rollup_seconds: float
    rollup_written: int
    load_seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def last_full(self) -> datetime:
        """The latest ``now`` at which every 24 h window (5-minute steps) is still full."""
        return self.first_minute + timedelta(minutes=self.minutes) - timedelta(minutes=5)


def _floor_to(value: datetime, minutes: int) -> datetime:
    step = minutes * 60
    return datetime.fromtimestamp(int(value.timestamp()) // step * step, tz=UTC)


def seed(agents: int) -> Seeded:
    rng = random.Random(42)  # the same data every run
    password = uuid.UUID(int=rng.getrandbits(128)).hex
    made = _django(SETUP_CODE, {"slug": TENANT_SLUG, "username": USERNAME, "password": password})
    tenant_id = int(made["tenant_id"])
    began = time.monotonic()
    now = datetime.now(UTC)
    # From 24 h before the earliest window the run can ask for (5-minute steps), to AHEAD_MINUTES after now.
    first_minute = _floor_to(now, 5) - timedelta(days=1)
    minutes = DAY_MINUTES + AHEAD_MINUTES
    recent_minutes = RECENT_MINUTES + AHEAD_MINUTES

    agent_rows, names, live, search = _agents(rng, tenant_id, now, agents)
    running = [row[0] for row in agent_rows if row[10] == "running"]
    chart_agents = running[: detail_agents(agents)]
    assert len(chart_agents) == detail_agents(agents), f"only {len(running)} running agents to chart"
    detail = set(chart_agents)
    others = [row[0] for row in agent_rows if row[10] in LIVE_STATES and row[0] not in detail]
    assert len(chart_agents) + len(others) == live

    with _pg(autocommit=False) as conn, conn.cursor() as cur:
        # Bulk load: the rows are consistent by construction; skip the per-row FK triggers.
        cur.execute("SET session_replication_role = replica")
        with cur.copy(f"COPY fleet_agent ({AGENT_COLUMNS}) FROM STDIN") as copy:
            for row in agent_rows:
                copy.write_row((*row, *AGENT_DEFAULTS))
        stamps = [(first_minute + timedelta(minutes=m)).isoformat() for m in range(minutes)]
        # Minute by minute, every agent's row of that minute: the order ingestion writes them in,
        # so the heap is laid out as in production (a minute's rows together, an agent's spread out).
        r = rng.random
        bases = [(str(a), 10 + 70 * r(), 300 + 6000 * r(), 200 + 20000 * r(), 5 + 60 * r(), 50 + 800 * r())
                 for a in (*chart_agents, *others)]  # fmt: skip
        recent_from = minutes - recent_minutes  # the first minute the other live agents report
        with cur.copy(f"COPY fleet_metricminute ({MINUTE_COLUMNS}) FROM STDIN") as copy:
            for m, stamp in enumerate(stamps):
                reporting = bases if m >= recent_from else bases[: len(chart_agents)]
                copy.write(_minute_text(rng, reporting, tenant_id, stamp))
        with cur.copy(f"COPY events_event ({EVENT_COLUMNS}) FROM STDIN") as copy:
            for agent_id in chart_agents:
                for row in _events(rng, tenant_id, agent_id, now):
                    copy.write_row(row)
        conn.commit()
    with _pg() as conn:
        conn.execute("VACUUM ANALYZE fleet_agent, fleet_metricminute, events_event")
    load_seconds = time.monotonic() - began

    end = first_minute + timedelta(minutes=minutes)
    rolled = _django(ROLLUP_CODE, {"start": first_minute.isoformat(), "end": end.isoformat()})
    with _pg() as conn:
        conn.execute(
            "VACUUM ANALYZE fleet_metrichour, fleet_tenantmetricbucket, fleet_tenantmetricminute, fleet_rollupmark"
        )
        # Write the load's dirty buffers out now, not in a checkpoint during the first phase.
        conn.execute("CHECKPOINT")

    seeded = Seeded(
        tenant_id=tenant_id,
        password=password,
        agents=agents,
        chart_agents=chart_agents,
        names=names,
        live=live,
        search_agents=search,
        first_minute=first_minute,
        minutes=minutes,
        recent_minutes=recent_minutes,
        rollup_seconds=float(rolled["seconds"]),
        rollup_written=int(rolled["written"]),
        load_seconds=load_seconds,
    )
    seeded.counts = _check_seed(seeded)
    return seeded


def _agents(
    rng: random.Random, tenant_id: int, now: datetime, agents: int
) -> tuple[list[tuple[Any, ...]], dict[uuid.UUID, str], int, int]:
    states = [s for s, _ in STATES]
    weights = [w for _, w in STATES]
    rows: list[tuple[Any, ...]] = []
    names: dict[uuid.UUID, str] = {}
    live = search = 0
    for i in range(agents):
        agent_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        team = TEAMS[rng.randrange(len(TEAMS))]
        name = f"{team}-{ROLES[rng.randrange(len(ROLES))]}-{i:05d}"
        labels = {"team": team, "env": ENVS[rng.randrange(len(ENVS))], "region": REGIONS[rng.randrange(len(REGIONS))]}
        observed = rng.choices(states, weights)[0]
        desired = {"paused": "paused", "stopped": "stopped"}.get(observed, "running")
        if rng.random() < PENDING_SHARE:
            desired = rng.choice([d for d in ("running", "paused", "stopped") if d != desired])
        registered = now - timedelta(days=rng.randint(2, 90))
        if observed == "starting":
            heartbeat = metrics_at = None
            metrics: tuple[float | None, ...] = (None,) * 6
        else:
            is_live = observed in LIVE_STATES
            # Live agents: fresh (an hour ahead, so still fresh at the end of the run); others: hours old.
            metrics_at = now + timedelta(hours=1) if is_live else now - timedelta(hours=rng.randint(2, 48))
            heartbeat = now if is_live else metrics_at
            requests = round(rng.uniform(5, 60), 1)
            errors = round(requests * rng.uniform(0, 0.2), 2) if rng.random() < 0.3 else 0.0
            metrics = (
                round(rng.uniform(2, 98), 2),
                round(rng.uniform(200, 8000), 1),
                round(rng.uniform(80, 2500), 1),
                round(rng.uniform(0, 20000), 1),
                requests,
                errors,
            )
            live += is_live
        search += team == FILTER_LABEL[1]
        rows.append(
            (
                agent_id, tenant_id, f"ext-{i:05d}", name, Jsonb(labels), desired, None, None, 1, Jsonb({}),
                observed, registered, heartbeat, *metrics, metrics_at, registered, now,
            )
        )  # fmt: skip
        names[agent_id] = name
    return rows, names, live, search


def _minute_text(rng: random.Random, bases: list[tuple[str, float, float, float, float, float]], tenant_id: int,
                 stamp: str) -> str:  # fmt: skip
    """One minute's rows of every agent as COPY text: 6 samples a minute (a heartbeat every 10 s)."""
    r = rng.random
    lines = []
    for agent_id, cpu0, mem0, tok0, req0, lat0 in bases:
        cpu, mem = cpu0 * (0.8 + 0.4 * r()), mem0 * (0.95 + 0.1 * r())
        requests = int(req0 * (0.5 + r()))
        errors = int(requests * 0.05 * r() * 2) if r() < 0.2 else 0
        lines.append(
            f"{agent_id}\t{tenant_id}\t{stamp}\t6\t{cpu * 6:.2f}\t{min(100.0, cpu * 1.2):.2f}\t{mem * 6:.1f}\t"
            f"{mem * 1.03:.1f}\t{int(tok0 * (0.5 + r()))}\t{requests}\t{errors}\t{lat0 * (0.7 + 0.6 * r()):.1f}\n"
        )
    return "".join(lines)


EVENT_KINDS = {
    "control": ("control.desired_state", "info", "Desired state set to running", False),
    "failed": ("task.failed", "error", "Task failed", True),
    "done": ("task.completed", "info", "Task done", True),
}


def _events(rng: random.Random, tenant_id: int, agent_id: uuid.UUID, now: datetime) -> list[tuple[Any, ...]]:
    rows = []
    for n in range(EVENTS_PER_AGENT):
        at = now - timedelta(seconds=rng.randint(60, 86_400))
        which = "control" if n < CONTROL_EVENTS_PER_AGENT else "failed" if rng.random() < 0.1 else "done"
        kind, severity, message, task = EVENT_KINDS[which]
        data = {"task": f"t-{n}", "outcome": severity} if task else {}
        uid = uuid.UUID(int=rng.getrandbits(128), version=4)
        rows.append((tenant_id, agent_id, uid, kind, severity, message, Jsonb(data), at, at))
    return rows


def _check_seed(s: Seeded) -> dict[str, int]:
    """Count what was loaded; raise when anything is missing."""
    span_end = s.first_minute + timedelta(minutes=s.minutes)
    recent_first = span_end - timedelta(minutes=s.recent_minutes)

    def hours(first: datetime, minutes: int) -> int:
        return len({_floor_to(first + timedelta(minutes=m), 60) for m in range(minutes)})

    detail, others = len(s.chart_agents), s.live - len(s.chart_agents)
    minute_rows = detail * s.minutes + others * s.recent_minutes
    buckets = s.minutes // 5
    with _pg() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM fleet_agent WHERE tenant_id = %(t)s),"
            " (SELECT count(*) FROM fleet_agent WHERE tenant_id = %(t)s AND metrics_at >= now()),"
            " (SELECT count(*) FROM fleet_agent WHERE tenant_id = %(t)s AND labels -> 'team' = %(team)s),"
            " (SELECT count(*) FROM fleet_metricminute WHERE tenant_id = %(t)s),"
            " (SELECT count(DISTINCT agent_id) FROM fleet_metricminute WHERE tenant_id = %(t)s),"
            " (SELECT count(*) FROM fleet_metricminute m JOIN fleet_agent a ON a.id = m.agent_id"
            "   WHERE m.tenant_id = %(t)s AND a.tenant_id = %(t)s AND m.minute >= %(a)s AND m.minute < %(b)s),"
            " (SELECT count(*) FROM fleet_metrichour WHERE tenant_id = %(t)s),"
            " (SELECT count(*) FROM fleet_tenantmetricbucket WHERE tenant_id = %(t)s),"
            " (SELECT count(*) FROM events_event WHERE tenant_id = %(t)s)",
            {
                "t": s.tenant_id,
                "team": Jsonb(FILTER_LABEL[1]),
                "a": s.first_minute,
                "b": span_end,
            },
        ).fetchone()
    assert row is not None
    names = ("agents", "live", "search", "minutes", "minute_agents", "minutes_joined", "hours", "buckets", "events")
    counts = dict(zip(names, (int(v) for v in row), strict=True))
    expected = {
        "agents": s.agents,
        "live": s.live,
        "search": s.search_agents,
        "minutes": minute_rows,
        "minute_agents": s.live,  # every live agent reports
        "minutes_joined": minute_rows,
        "hours": detail * hours(s.first_minute, s.minutes) + others * hours(recent_first, s.recent_minutes),
        "buckets": buckets,
        "events": detail * EVENTS_PER_AGENT,
    }
    wrong = {k: (counts[k], v) for k, v in expected.items() if counts[k] != v}
    assert not wrong, f"the data is not what was loaded (found, expected): {wrong}"
    return counts


# --- the app's window arithmetic and SQL --------------------------------------------------


def window(span: timedelta, step: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """``fleet.series.window``: [start, end) ending with the last step over by ``now``."""
    step_s = int(step.total_seconds())
    end = datetime.fromtimestamp((int(now.timestamp()) // step_s) * step_s, tz=UTC)
    return end - span, end


STATES_CODE = """
import json
from fleet.models import ObservedState
print("L10BENCH " + json.dumps({"states": list(ObservedState.values)}))
"""

APP_SQL_CODE = """
import json, os
from fleet import sql
print("L10BENCH " + json.dumps({"sql": getattr(sql, json.loads(os.environ["BENCH_SPEC"])["name"])}))
"""


def app_sql(name: str) -> str:
    """A module-level SQL string of ``fleet/sql.py``, as the app builds it, so the floor
    runs the query the app runs today."""
    return str(_django(APP_SQL_CODE, {"name": name}, timeout=60)["sql"])


# The selectors' queries, as Django writes them for PostgreSQL.
# The overview's tiles as the app reads them now: one pass for the counts by state and
# the resources (fleet.sql.FLEET_TILES_SQL, read from the app below), and three top-10
# walks of their indexes (fleet/models.py), the freshness bound a sub-select as
# fleet.selectors.top_agents writes it.
LIVE = "FROM fleet_agent WHERE tenant_id = %s AND metrics_at >= (SELECT %s::timestamptz)"
SQL_TOP_CPU = f"SELECT id, name, cpu_percent {LIVE} AND cpu_percent IS NOT NULL ORDER BY cpu_percent DESC LIMIT 10"
SQL_TOP_ERRORS = (
    "SELECT id, name, (LEAST(errors_per_min, requests_per_min) / NULLIF(requests_per_min, 0.0)) AS error_rate "
    f"{LIVE} AND errors_per_min > 0 AND requests_per_min > 0 ORDER BY 3 DESC LIMIT 10"
)
SQL_TOP_TOKENS = f"SELECT id, name, tokens_per_min {LIVE} AND tokens_per_min > 0 ORDER BY tokens_per_min DESC LIMIT 10"
SQL_FOLD_MARKS = "SELECT name, done_until FROM fleet_rollupmark WHERE name IN ('fleet-minutes-since', 'fleet-minutes')"
SQL_FOLDED = (
    "SELECT minute, agents, samples, cpu_sum, cpu_p95, memory_sum, memory_p95, tokens, requests, errors, "
    "latency_p95_ms FROM fleet_tenantmetricminute WHERE tenant_id = %s AND minute >= %s AND minute < %s ORDER BY minute"
)
SQL_BUCKETS = (
    "SELECT * FROM fleet_tenantmetricbucket WHERE tenant_id = %s AND bucket >= %s AND bucket < %s ORDER BY bucket"
)
USER_COLUMNS = "u.id, u.password, u.last_login, u.is_superuser, u.username, u.first_name, u.last_name, u.email, "
USER_COLUMNS += "u.is_staff, u.is_active, u.date_joined"
# fleet.selectors.LIST_FIELDS: the list reads only what its rows show.
LIST_COLUMNS = (
    "a.id, a.tenant_id, a.name, a.external_id, a.labels, a.desired_state, a.desired_changed_at, "
    "a.desired_changed_by_id, a.pause_reason, a.pause_until, a.pause_mode, a.observed_state, "
    "a.observed_changed_at, a.last_heartbeat_at, a.metrics_at, a.cpu_percent, a.memory_mb, "
    "a.tokens_per_min, a.errors_per_min, u.id, u.username"
)
LIST_FROM = "FROM fleet_agent a LEFT OUTER JOIN auth_user u ON (a.desired_changed_by_id = u.id)"
SQL_LIST_DEFAULT = (
    f"SELECT {LIST_COLUMNS} {LIST_FROM} WHERE a.tenant_id = %s ORDER BY a.name ASC NULLS LAST, a.id ASC LIMIT 50"
)
SQL_COUNT_DEFAULT = "SELECT COUNT(*) AS __count FROM fleet_agent WHERE tenant_id = %s"
SQL_LIST_FILTERED = (
    f"SELECT {LIST_COLUMNS} {LIST_FROM} WHERE a.tenant_id = %s AND a.labels @> %s "
    "ORDER BY a.cpu_percent DESC NULLS LAST, a.id ASC LIMIT 50"
)
# Containment, as the app asks on PostgreSQL (fleet/labels.py), which the GIN index serves.
SQL_COUNT_FILTERED = "SELECT COUNT(*) AS __count FROM fleet_agent WHERE tenant_id = %s AND labels @> %s"
SQL_AGENT = (
    f"SELECT a.*, t.*, {USER_COLUMNS} FROM fleet_agent a INNER JOIN tenancy_tenant t ON (a.tenant_id = t.id) "  # noqa: S608
    "LEFT OUTER JOIN auth_user u ON (a.desired_changed_by_id = u.id) WHERE a.id = %s LIMIT 21"
)
SQL_AGENT_MINUTES = (
    "SELECT minute, samples, cpu_sum, cpu_max, memory_sum, memory_max, tokens, requests, errors, latency_p95_ms "
    "FROM fleet_metricminute WHERE agent_id = %s AND minute >= %s AND minute < %s"
)
# dashboard.selectors.agent_detail's default: the agent's latest warnings and errors.
SQL_EVENTS = (
    "SELECT * FROM events_event WHERE agent_id = %s AND severity IN ('warning', 'error', 'critical') "
    "ORDER BY occurred_at DESC LIMIT 15"
)
SQL_CONTROL = (
    "SELECT * FROM events_event WHERE agent_id = %s AND type::text LIKE 'control.%%' ORDER BY occurred_at DESC LIMIT 10"
)


class Floor:
    """The pages' queries with psycopg over one connection; each returns what it read, to check."""

    def __init__(self, tenant_id: int) -> None:
        self.conn = _pg()
        self.tenant_id = tenant_id
        self.fleet_minutes = app_sql("FLEET_MINUTES_SQL")
        self.tiles = app_sql("FLEET_TILES_SQL")
        self.states = list(_django(STATES_CODE, {}, timeout=60)["states"])

    def close(self) -> None:
        self.conn.close()

    def overview(self, rng: str) -> dict[str, int]:
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=3 * HEARTBEAT_INTERVAL_S)
        t = self.tenant_id
        with self.conn.cursor() as cur:
            params: dict[str, Any] = {f"state_{n}": state for n, state in enumerate(self.states)}
            tiles = cur.execute(self.tiles, {**params, "tenant_id": t, "since": cutoff}).fetchone()
            assert tiles is not None
            tops = [len(cur.execute(q, (t, cutoff)).fetchall()) for q in (SQL_TOP_CPU, SQL_TOP_ERRORS, SQL_TOP_TOKENS)]
            if rng == "1h":
                # As fleet.series reads it: the minutes the rollups folded, and the minute
                # rows only for the minutes since the latest fold.
                start, end = window(timedelta(hours=1), timedelta(minutes=1), now)
                marks = dict(cur.execute(SQL_FOLD_MARKS).fetchall())
                since, until = marks.get("fleet-minutes-since"), marks.get("fleet-minutes")
                low, high = (max(start, since), min(end, until)) if since and until else (end, end)
                points = cur.execute(self.fleet_minutes, (t, start, low)).fetchall() if start < low else []
                points += cur.execute(SQL_FOLDED, (t, low, high)).fetchall() if low < high else []
                points += cur.execute(self.fleet_minutes, (t, high, end)).fetchall() if high < end else []
                chart_rows = sum(int(p[1]) for p in points)
            else:
                start, end = window(timedelta(hours=24), timedelta(minutes=5), now)
                points = cur.execute(SQL_BUCKETS, (t, start, end)).fetchall()
                chart_rows = len(points)
        return {
            "agents": int(tiles[0]),
            "live": int(tiles[len(self.states) + 2]),  # the resources' count of live agents
            "tops": min(tops),
            "points": len(points),
            "chart_rows": chart_rows,
        }

    def agent_list(self, filtered: bool) -> tuple[int, list[str]]:
        t = self.tenant_id
        with self.conn.cursor() as cur:
            if filtered:
                key, value = FILTER_LABEL
                row = cur.execute(SQL_COUNT_FILTERED, (t, Jsonb({key: value}))).fetchone()
                page = cur.execute(SQL_LIST_FILTERED, (t, Jsonb({key: value}))).fetchall()
            else:
                row = cur.execute(SQL_COUNT_DEFAULT, (t,)).fetchone()
                page = cur.execute(SQL_LIST_DEFAULT, (t,)).fetchall()
        assert row is not None
        return int(row[0]), [str(r[0]) for r in page]

    def agent_detail(self, agent_id: uuid.UUID) -> tuple[int, int, int]:
        start, end = window(timedelta(hours=24), timedelta(minutes=5), datetime.now(UTC))
        with self.conn.cursor() as cur:
            agent = cur.execute(SQL_AGENT, (agent_id,)).fetchall()
            minutes = cur.execute(SQL_AGENT_MINUTES, (agent_id, start, end)).fetchall()
            events = cur.execute(SQL_EVENTS, (agent_id,)).fetchall()
            control = cur.execute(SQL_CONTROL, (agent_id,)).fetchall()
        assert len(agent) == 1
        return len(minutes), len(events), len(control)

    def notable_events(self, agent_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many events each agent's page lists by default (at most 15)."""
        with self.conn.cursor() as cur:
            return {a: len(cur.execute(SQL_EVENTS, (a,)).fetchall()) for a in agent_ids}


# --- the pages ---------------------------------------------------------------------------

CHART_RE = re.compile(r'<script id="chart-cpu" type="application/json">(.*?)</script>', re.S)
ROW_RE = re.compile(r'<tr id="agent-([0-9a-f-]{36})"')


def chart_points(html: str) -> tuple[int, int]:
    """(slots, slots with a value) of the page's CPU chart."""
    found = CHART_RE.search(html)
    assert found, "the page has no CPU chart"
    chart = json.loads(found.group(1))
    values = chart["series"][0]["values"]
    return len(chart["x"]), sum(v is not None for v in values)


class Pages:
    """A logged-in member's browser: one keep-alive connection; ``get`` times one page."""

    def __init__(self, base_url: str, tenant_id: int, password: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30.0, follow_redirects=False)
        # No session cookie: /healthz through it is the HTTP path alone (the floor of a page).
        self.anonymous = httpx.Client(base_url=base_url, timeout=30.0, follow_redirects=False)
        self.redis = redis.Redis(host=common.HOST, port=common.REDIS_PORT, db=REDIS_DB)
        self.tenant_id = tenant_id
        self.generation_key = f"l10:1:tgen:{tenant_id}"  # Django's key for tenant_cache's "tgen:<id>"
        self._login(password)

    def _login(self, password: str) -> None:
        form = self.client.get("/login/")
        _expect(form, 200)
        token = self.client.cookies.get("csrftoken")
        assert token, "the login form set no CSRF cookie"
        done = self.client.post(
            "/login/", data={"username": USERNAME, "password": password, "csrfmiddlewaretoken": token, "next": ""}
        )
        _expect(done, 302)
        assert self.client.cookies.get("sessionid"), "logged in without a session cookie"

    def close(self) -> None:
        self.client.close()
        self.anonymous.close()
        self.redis.close()

    def get(self, path: str, *, miss: bool) -> tuple[float, str]:
        """(ms, body) of one GET; with ``miss``, the tenant's cache generation is bumped and
        its charts (kept under a generation of their own, which state changes do not move:
        ``core.tenant_cache.METRICS_GENERATION``) are dropped first (untimed)."""
        if miss:
            self.redis.incr(self.generation_key)
            charts = list(self.redis.scan_iter(match=f"l10:1:t:{self.tenant_id}:g-1:*"))
            if charts:
                self.redis.delete(*charts)
        start = time.perf_counter()
        response = self.client.get(path)
        elapsed = (time.perf_counter() - start) * 1000
        _expect(response, 200)
        return elapsed, response.text

    def generation(self) -> int:
        return int(self.redis.get(self.generation_key) or 0)

    def metrics_entries(self, kind: str) -> int:
        """Cache entries of this kind stored for the tenant under the charts' generation."""
        return sum(1 for _ in self.redis.scan_iter(match=f"l10:1:t:{self.tenant_id}:g-1:{kind}:*", count=1000))

    def entries(self, kind: str, after: int) -> int:
        """Cache entries of this kind stored for the tenant under generations newer than ``after``."""
        pattern = re.compile(rf"l10:1:t:{self.tenant_id}:g(\d+):{re.escape(kind)}:")
        found = 0
        for key in self.redis.scan_iter(match=f"l10:1:t:{self.tenant_id}:g*:{kind}:*", count=1000):
            matched = pattern.match(key.decode())
            found += bool(matched and int(matched.group(1)) > after)
        return found


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise AssertionError(
            f"GET {response.request.url.path}: {response.status_code}, expected {status}: {response.text[:300]}"
        )


@dataclass
class Measured:
    api_ms: list[float]
    floor_ms: list[float]
    server_cpu: float  # seconds, during the page blocks
    extra_ms: list[float] = field(default_factory=list)
    extra_cpu: float = 0.0  # seconds, during the ``extra`` blocks

    def cpu_ms(self) -> float:
        """Server CPU per page."""
        return self.server_cpu * 1000 / len(self.api_ms)

    def extra_cpu_ms(self) -> float:
        return self.extra_cpu * 1000 / len(self.extra_ms) if self.extra_ms else 0.0

    def p(self, q: float, *, floor: bool = False) -> float:
        return common.percentile(self.floor_ms if floor else self.api_ms, q)

    def describe(self) -> str:
        return (
            f"n={len(self.api_ms)}: p50 {self.p(50):.2f}, p99 {self.p(99):.2f}, max {max(self.api_ms):.2f} ms; "
            f"server CPU {self.server_cpu * 1000 / len(self.api_ms):.2f} ms per page; "
            f"floor n={len(self.floor_ms)}: p50 {self.p(50, floor=True):.2f}, p99 {self.p(99, floor=True):.2f} ms"
        )


def paired(
    api: Callable[[int], float],
    floor: Callable[[int], float],
    *,
    count: int,
    seconds: float,
    server_pid: int,
    extra: Callable[[int], float] | None = None,
) -> Measured:
    """Page and floor (and ``extra``, for context) in alternating blocks until ``count`` of
    each or ``seconds`` in all."""
    for i in range(WARMUP):
        api(i)
        floor(i)
        if extra:
            extra(i)
    api_ms: list[float] = []
    floor_ms: list[float] = []
    extra_ms: list[float] = []
    cpu = extra_cpu = 0.0
    deadline = time.monotonic() + seconds
    while len(api_ms) < count and time.monotonic() < deadline:
        n = min(BLOCK, count - len(api_ms))
        before = common.cpu_seconds(server_pid)
        for _ in range(n):
            api_ms.append(api(len(api_ms)))
        cpu += common.cpu_seconds(server_pid) - before
        for _ in range(n):
            floor_ms.append(floor(len(floor_ms)))
        before = common.cpu_seconds(server_pid)
        for _ in range(n if extra else 0):
            assert extra
            extra_ms.append(extra(len(extra_ms)))
        extra_cpu += common.cpu_seconds(server_pid) - before
    assert api_ms, "no page was measured"
    return Measured(api_ms, floor_ms, cpu, extra_ms, extra_cpu)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


# --- the phases ----------------------------------------------------------------------------


def run(agents: int = AGENTS) -> list[Row]:
    """The table at ``agents`` agents (``AGENTS`` unless ``bench/run.py --growth`` asks)."""
    load = _loadavg()
    with common.own_stores(DB_NAME, REDIS_DB):
        common.flush_redis()
        common.recreate_database()
        s = seed(agents)
        common.progress(
            f"dashboard: loaded {s.counts['agents']:,} agents ({s.live:,} live, all reporting), "
            f"{s.counts['minutes']:,} minute rows, "
            f"{s.counts['events']:,} events in {s.load_seconds:.1f} s; rollup_range {s.rollup_seconds:.1f} s"
        )
        with common.server() as srv:
            pages = Pages(srv.base_url, s.tenant_id, s.password)
            floor = Floor(s.tenant_id)
            try:
                usage = Usage(srv.pid)
                rows = measure(pages, floor, srv.pid, s)
                rows.append(usage.row())
            finally:
                pages.close()
                floor.close()
        # Every window read above was full: the run ended before the seeded span did.
        assert datetime.now(UTC) < s.last_full, "the run outlasted the seeded minutes; its windows were not full"
    context = Row(
        "rollup_range of the day (context)",
        "s",
        s.rollup_seconds,
        note=f"fleet.rollups.rollup_range over {s.minutes:,} minutes of {len(s.chart_agents):,} detail agents and "
        f"the last {s.recent_minutes:,} of the other {s.live - len(s.chart_agents):,} live agents "
        f"({s.counts['minutes']:,} minute rows) in one call: {s.counts['hours']:,} hour rows + "
        f"{s.counts['buckets']} fleet buckets ({s.rollup_written:,} written); the COPY load of agents, minutes "
        f"and events + VACUUM ANALYZE took {s.load_seconds:.1f} s",
    )
    rows[-1] = replace(rows[-1], note=f"{rows[-1].note}; load average before/after {load} / {_loadavg()}")
    return [*rows, context]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _core_busy() -> dict[int, float]:
    """Busy seconds of each core so far (``/proc/stat``: all but idle and iowait)."""
    tick = os.sysconf("SC_CLK_TCK")
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(f) for f in fields[:8]]
            busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / tick
    return busy


class Usage:
    """How busy the two cores were while measuring, and how much of it was ours: on a shared
    machine, other processes on the server's core inflate every figure."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.wall = time.monotonic()
        self.cores = _core_busy()
        self.server = common.cpu_seconds(server_pid)
        self.me = time.process_time()

    def row(self) -> Row:
        wall = time.monotonic() - self.wall
        cores = {c: (b - self.cores.get(c, 0.0)) / wall for c, b in _core_busy().items()}
        server = (common.cpu_seconds(self.server_pid) - self.server) / wall
        me = (time.process_time() - self.me) / wall
        server_core = cores.get(common.SERVER_CORE, 0.0)
        return Row(
            "server core busy while measuring (context)",
            "%",
            server_core * 100,
            note=f"over {wall:.0f} s: core {common.SERVER_CORE} busy {server_core:.0%}, of which the server "
            f"{server:.0%}; core {common.CLIENT_CORE} busy {cores.get(common.CLIENT_CORE, 0.0):.0%}, of which this "
            f"process {me:.0%}; the rest is PostgreSQL, Redis and any other process (a quiet machine leaves "
            f"core {common.SERVER_CORE} to the server and the database)",
        )


def overview_target(agents: int) -> float:
    """The uncached overview's target for a fleet of ``agents``."""
    return next(
        (ms for size, ms in sorted(TARGET_OVERVIEW_MS.items()) if agents <= size), max(TARGET_OVERVIEW_MS.values())
    )


def measure(pages: Pages, floor: Floor, pid: int, s: Seeded) -> list[Row]:
    base = f"/t/{TENANT_SLUG}"
    rows = []

    # 1. Overview, uncached (1 h range, the default).
    overview_1h, expect_1h = _overview_phase(pages, floor, pid, s, f"{base}/", "1h", UNCACHED_COUNT, UNCACHED_SECONDS)
    rows.append(
        Row(
            "overview p95, uncached",
            "ms",
            overview_1h.p(95),
            target=overview_target(s.agents),
            floor=overview_1h.p(95, floor=True),
            note=f"GET {base}/ (1 h charts), every request a cache miss; {overview_1h.describe()}; "
            f"reads {s.agents:,} agents, {s.live:,} live (each with minute rows: {expect_1h:,} in the hour, "
            f"folded by the rollups into 60 fleet minutes); floor: psycopg, the tiles in one pass "
            f"(FLEET_TILES_SQL), the 3 top-10 index walks, the folded minutes (and FLEET_MINUTES_SQL for any "
            f"minute since the latest fold); documented SLA {SLA_OVERVIEW_MS:.0f} ms",
        )
    )

    # 2. Overview, cached: the same URL again and again; floor: GET of the cached entry.
    cached, size = _cached_phase(
        pages, pid, f"{base}/", f'data-testid="total-agents">{s.agents:,}<', ("overview", "fleet-charts")
    )
    rows.append(
        Row(
            "overview p95, cached",
            "ms",
            cached.p(95),
            target=TARGET_CACHED_MS,
            floor=cached.p(95, floor=True),
            note=f"the same URL repeated, every lookup a hit (no entry stored during the phase); {cached.describe()}; "
            f"floor: one redis-py GET of the cached overview entry ({size:,} bytes); documented SLA "
            f"{SLA_CACHED_MS:.0f} ms; for context, GET /healthz (the HTTP + ASGI + middleware path, no session, "
            f"no database) in the same blocks: p50 {common.percentile(cached.extra_ms, 50):.2f}, "
            f"p95 {common.percentile(cached.extra_ms, 95):.2f} ms",
        )
    )

    # 2b. The list and the detail (24 h), cached: the server's CPU per page beside /healthz's.
    agent = s.chart_agents[0]
    for label, path, expect, kinds in (
        ("agent list", f"{base}/agents/", f">{s.agents} agents<", ("agent-list-rows",)),
        (
            "agent detail 24 h",
            f"{base}/agents/{agent}/?range=24h",
            f"<h1>{s.names[agent]} ",
            ("agent-detail", "agent-charts-html"),
        ),
    ):
        page_cached, _ = _cached_phase(pages, pid, path, expect, kinds)
        rows.append(
            Row(
                f"{label}, cached: server CPU per page",
                "ms",
                page_cached.cpu_ms(),
                target=TARGET_LIST_CPU_MS if label == "agent list" else TARGET_DETAIL_CPU_MS,
                floor=page_cached.extra_cpu_ms(),
                note=f"GET {path} repeated, every part a cache hit; {page_cached.describe()}; p95 "
                f"{page_cached.p(95):.2f} ms; floor: the server's CPU per GET /healthz in the same blocks "
                "(the HTTP + ASGI + middleware path, no session, no database)",
            )
        )

    # 3. Agent list, uncached: the default page, and a filtered + sorted one.
    for filtered in (False, True):
        measured, count = _list_phase(pages, floor, pid, s, filtered)
        query = f"?labels={FILTER_LABEL[0]}%3D{FILTER_LABEL[1]}&sort={FILTER_SORT}" if filtered else ""
        rows.append(
            Row(
                "agent list p95, uncached" + (" (label filter, sort -cpu)" if filtered else ""),
                "ms",
                measured.p(95),
                target=TARGET_FILTERED_MS if filtered else TARGET_LIST_MS,
                floor=measured.p(95, floor=True),
                note=f"GET {base}/agents/{query}: page 1 of {count:,}, {min(PAGE_SIZE, count)} rows, checked "
                f"against the floor's; {measured.describe()}; floor: the count + the page query",
            )
        )

    # 4. Agent detail with the 24 h chart, uncached, a different agent each time.
    detail = _detail_phase(pages, floor, pid, s)
    rows.append(
        Row(
            "agent detail 24 h p95, uncached",
            "ms",
            detail.p(95),
            target=TARGET_DETAIL_MS,
            floor=detail.p(95, floor=True),
            note=f"GET {base}/agents/<id>/?range=24h over {len(s.chart_agents):,} agents, each reading {DAY_MINUTES:,} "
            f"minute rows into 288 points; {detail.describe()}; floor: the agent row, its 24 h of minute rows, "
            f"its latest {LATEST_EVENTS} warnings and errors (the page's default) and {LATEST_CONTROL} control events",
        )
    )

    # 4b. Throughput of the cached pages as concurrency grows.
    for label, path, expect in (
        ("overview", f"{base}/", f'data-testid="total-agents">{s.agents:,}<'),
        ("agent list", f"{base}/agents/", f">{s.agents} agents<"),
        ("agent detail 24 h", f"{base}/agents/{agent}/?range=24h", f"<h1>{s.names[agent]} "),
    ):
        # One client, then the two compared in alternating rounds: a drift of the machine
        # during the phase (another process, a cache warming) falls on both alike.
        runs = [_throughput(pages, pid, path, expect, CONCURRENCY[0], THROUGHPUT_SECONDS)]
        for _ in range(THROUGHPUT_ROUNDS):
            runs += [
                _throughput(pages, pid, path, expect, c, THROUGHPUT_SECONDS / THROUGHPUT_ROUNDS) for c in (LOW, HIGH)
            ]
        low, high = (_per_second([load for load, _ in runs[1:] if load.concurrency == c]) for c in (LOW, HIGH))
        rows.append(
            Row(
                f"{label}, cached: pages/s at concurrency {HIGH} ÷ at {LOW}",
                "×",
                high / low,
                better="higher",
                target=THROUGHPUT_HOLDS,
                note=f"GET {path} through wrk (one thread on the load generator's core, keep-alive connections): "
                f"{THROUGHPUT_SECONDS:.0f} s at c={CONCURRENCY[0]}, then {THROUGHPUT_ROUNDS} alternating rounds of "
                f"{THROUGHPUT_SECONDS / THROUGHPUT_ROUNDS:.0f} s at c={LOW} and c={HIGH} ({low:.0f} and {high:.0f} "
                "pages/s in all): " + "; ".join(_describe_load(*r) for r in runs),
            )
        )

    # 5. Context: the overview over 24 h, from the rollups.
    overview_24h, _ = _overview_phase(pages, floor, pid, s, f"{base}/?range=24h", "24h", CONTEXT_COUNT, CONTEXT_SECONDS)
    rows.append(
        Row(
            "overview 24 h p95, uncached (context)",
            "ms",
            overview_24h.p(95),
            floor=overview_24h.p(95, floor=True),
            note=f"GET {base}/?range=24h: 288 fleet buckets from the rollups; {overview_24h.describe()}",
        )
    )
    return rows


def _overview_phase(
    pages: Pages, floor: Floor, pid: int, s: Seeded, path: str, rng: str, count: int, seconds: float
) -> tuple[Measured, int]:
    slots = 60 if rng == "1h" else 288
    chart_rows = 60 * s.live if rng == "1h" else 288  # every live agent reports every minute
    total = f'data-testid="total-agents">{s.agents:,}<'
    reporting = f'Reporting now</span><span class="tile-value">{s.live:,}<'

    def api(i: int) -> float:
        ms, html = pages.get(path, miss=True)
        assert total in html and reporting in html, f"overview without the expected counts: {html[:300]}"
        assert chart_points(html) == (slots, slots), f"overview chart points {chart_points(html)}, expected {slots}"
        return ms

    def floor_one(i: int) -> float:
        ms, got = timed(lambda: floor.overview(rng))
        expected = {"agents": s.agents, "live": s.live, "tops": 10, "points": slots, "chart_rows": chart_rows}
        assert got == expected, f"floor read {got}, expected {expected}"
        return ms

    generation = pages.generation()
    measured = paired(api, floor_one, count=count, seconds=seconds, server_pid=pid)
    stored = pages.entries("overview", generation)
    assert stored == len(measured.api_ms) + WARMUP, (
        f"{stored} overview entries stored for {len(measured.api_ms)} misses"
    )
    return measured, chart_rows


def _cached_phase(pages: Pages, pid: int, path: str, expect: str, kinds: tuple[str, ...]) -> tuple[Measured, int]:
    """``path`` again and again, every part of it (``kinds``, the first its main entry) a
    cache hit; each page must hold ``expect``. Floor: a GET of the main entry."""
    pages.get(path, miss=True)  # a fresh generation, filled once
    generation = pages.generation()
    keys = list(pages.redis.scan_iter(match=f"l10:1:t:{pages.tenant_id}:g{generation}:*"))
    keys += list(pages.redis.scan_iter(match=f"l10:1:t:{pages.tenant_id}:g-1:*"))  # the charts
    found = {kind: [k for k in keys if f":{kind}:".encode() in k] for kind in kinds}
    assert len(keys) == len(kinds) and all(len(v) == 1 for v in found.values()), (
        f"expected {', '.join(kinds)} cached, found {keys}"
    )
    main = found[kinds[0]][0]
    ttls = {k: pages.redis.pttl(k) for k in keys}
    filled = time.monotonic()
    size = len(pages.redis.get(main) or b"")
    assert size > 0

    def api(i: int) -> float:
        ms, html = pages.get(path, miss=False)
        assert expect in html, f"{path}: {expect!r} not in the page"
        return ms

    def floor_one(i: int) -> float:
        ms, value = timed(lambda: pages.redis.get(main))
        assert value is not None and len(value) == size
        return ms

    def healthz(i: int) -> float:
        start = time.perf_counter()
        response = pages.anonymous.get("/healthz")
        elapsed = (time.perf_counter() - start) * 1000
        _expect(response, 200)
        return elapsed

    measured = paired(api, floor_one, count=CACHED_COUNT, seconds=CACHED_SECONDS, server_pid=pid, extra=healthz)
    assert pages.generation() == generation, "the generation moved during the cached phase"
    # A miss would have stored its entry again and so reset the entry's TTL.
    elapsed_ms = (time.monotonic() - filled) * 1000
    for k, ttl in ttls.items():
        left = pages.redis.pttl(k)
        assert 0 < left <= ttl - elapsed_ms + 50, f"{k!r} was stored again during the cached phase: a miss"
    return measured, size


def _throughput(
    pages: Pages, pid: int, path: str, expect: str, concurrency: int, seconds: float
) -> tuple[common.Load, float]:
    """wrk at ``concurrency`` on ``path`` as the signed-in member for ``seconds``; the load
    and the server's CPU per page. The page is checked before and after."""
    cookie = "; ".join(f"{name}={value}" for name, value in pages.client.cookies.items())
    for _ in range(2 if concurrency == CONCURRENCY[0] else 1):
        _, html = pages.get(path, miss=False)
        assert expect in html, f"{path}: {expect!r} not in the page"
    before = common.cpu_seconds(pid)
    load = common.wrk(
        f"{pages.client.base_url}{path}",
        concurrency=concurrency,
        seconds=seconds,
        headers={"Cookie": cookie},
    )
    cpu = common.cpu_seconds(pid) - before
    _, html = pages.get(path, miss=False)
    assert expect in html, f"{path}: {expect!r} not in the page after the load"
    return load, cpu * 1000 / load.requests


def _per_second(loads: list[common.Load]) -> float:
    return sum(load.requests for load in loads) / sum(load.seconds for load in loads)


def _describe_load(load: common.Load, cpu_ms: float) -> str:
    return (
        f"c={load.concurrency}: {load.per_second:.0f} pages/s, p50 {load.p50_ms:.1f}, p99 {load.p99_ms:.1f} ms, "
        f"server CPU {cpu_ms:.2f} ms per page"
    )


def _list_phase(pages: Pages, floor: Floor, pid: int, s: Seeded, filtered: bool) -> tuple[Measured, int]:
    params = {"labels": f"{FILTER_LABEL[0]}={FILTER_LABEL[1]}", "sort": FILTER_SORT} if filtered else {}
    path = f"/t/{TENANT_SLUG}/agents/" + (f"?{urlencode(params)}" if params else "")
    count, ids = floor.agent_list(filtered)
    assert count == (s.search_agents if filtered else s.agents) and len(ids) == min(PAGE_SIZE, count)
    marker = f'data-testid="agent-count">{count} agent'

    def api(i: int) -> float:
        ms, html = pages.get(path, miss=True)
        assert marker in html, f"the list does not say {count} agents"
        shown = ROW_RE.findall(html)
        assert shown == ids, "the list shows other rows than the floor's page"
        return ms

    def floor_one(i: int) -> float:
        ms, got = timed(lambda: floor.agent_list(filtered))
        assert got == (count, ids)
        return ms

    generation = pages.generation()
    measured = paired(api, floor_one, count=UNCACHED_COUNT, seconds=UNCACHED_SECONDS, server_pid=pid)
    stored = pages.entries("agent-list-rows", generation)
    assert stored == len(measured.api_ms) + WARMUP, f"{stored} list entries stored for {len(measured.api_ms)} misses"
    return measured, count


def _detail_phase(pages: Pages, floor: Floor, pid: int, s: Seeded) -> Measured:
    agents = s.chart_agents
    notable = floor.notable_events(agents)  # what each page lists: its warnings and errors
    assert any(notable.values()), "the seed gave no agent a warning or an error"

    def api(i: int) -> float:
        agent_id = agents[i % len(agents)]
        ms, html = pages.get(f"/t/{TENANT_SLUG}/agents/{agent_id}/?range=24h", miss=True)
        assert s.names[agent_id] in html
        assert chart_points(html) == (288, 288), f"agent chart points {chart_points(html)}, expected 288 full"
        assert html.count('class="sev sev-') == notable[agent_id], "the detail does not list its latest errors"
        # A miss: the page drew the agent's charts again and stored them (untimed check).
        assert pages.metrics_entries("agent-charts-html") == 1, "the detail's charts were not drawn and stored"
        return ms

    def floor_one(i: int) -> float:
        agent_id = agents[(i + len(agents) // 2) % len(agents)]  # other agents than the page's block
        ms, got = timed(lambda: floor.agent_detail(agent_id))
        assert got == (DAY_MINUTES, notable[agent_id], CONTROL_EVENTS_PER_AGENT), f"floor read {got}"
        return ms

    generation = pages.generation()
    measured = paired(api, floor_one, count=UNCACHED_COUNT, seconds=UNCACHED_SECONDS, server_pid=pid)
    # Counted by the detail entries, one per miss (their TTL, 30 s, outlasts a small run; a
    # full run's phase is longer, so each request also checks its charts above).
    stored = pages.entries("agent-detail", generation)
    assert stored <= len(measured.api_ms) + WARMUP and stored > 0, f"{stored} detail entries stored"
    return measured
