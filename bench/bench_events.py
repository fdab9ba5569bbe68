"""The event store at five million events (docs/performance.md, "The event store"): the
filtered first page an operator or a program asks for, and pages deep in a tenant's list,
each read as the console reads it, beside the same answer read by hand.

- Data (a PostgreSQL database of its own): after ``migrate``, three tenants through the
  app's own code (``common.seed_tenant``), their agents (``AGENTS`` in the main tenant,
  300 and 50 in the others) by one ``INSERT … SELECT generate_series``, then ``EVENTS``
  events by another, in time order as ingestion writes them: 90 % to the main tenant, 8 %
  and 2 % to the others, spread over the last 30 days (the retention), a few agents much
  busier than most (the busiest sends 1 % of its tenant's events). The types the SDK and
  the console write, in proportion: ``task.completed`` 60 %, ``task.started`` 15 %,
  ``agent.state_changed`` 8 %, ``agent.error_burst``, ``agent.cpu_spike``,
  ``control.pause|resume|stop``, ``alert.firing|resolved`` (half without an agent) and
  ``agent.unresponsive``, with the severities, messages and small JSON data their writers
  give them (events.services and its callers); what an agent sent has its ``uid``. The
  table's indexes (those the migrations made, read from the catalog) are dropped for the
  load and built again after it, then ``VACUUM ANALYZE``: minutes less than inserting
  into seven indexes row by row, and the same indexes.
- The figures are taken in a process of its own on core 0, Django set up as the server is
  (this process may have Django set up for another bench's database), warm.
- Filtered page, as ``GET /api/v1/events`` and ``EventService.query_events`` read it:
  ``events.selectors.page`` with ``known_types`` (a type the tenant never stored is
  E10407), then the records made. One type, one agent by its external id, the last 24 h,
  50 a page newest first, and the bounded total; each time another agent of the main
  tenant and another type (task.completed most). Then the same without the type check
  (``known_types=False``, as the events page reads them: a type never stored, no events),
  and the same naming each agent by its id (``agent_id`` takes an id or an external id).
  Target: p95 under 50 ms.
- Deep pages: the same function, no filter, from a cursor ``DEPTHS`` rows down the main
  tenant's list (made by ``core.listing.make_cursor``, as the page before it would have
  been given), each time a few hundred rows further, with the total. Target: p95 under
  50 ms, at each depth.
- Floors, in the same process, alternating with the figures: the same answers by hand
  with psycopg, written as one would for this schema: ``EXISTS`` for the type check; the
  page's ``SELECT`` (the agent looked up within the tenant, or its id on the events; the
  keyset as a row comparison, ``(occurred_at, id) < (…)``); the total as a ``count`` of
  at most 10,001 rows and, past that, the planner's estimate, as
  ``core.listing.bounded_total`` does. Each page's rows and total must be the floor's.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg

from bench import common
from bench.common import Row

DB_NAME = common.db_name("l10bench_events")
EVENTS = common.sized(5_000_000, 5_000)
AGENTS = common.sized(10_000, 50)  # the main tenant's
OTHER_AGENTS = (common.sized(300, 10), common.sized(50, 5))
TENANTS = ("events-main", "events-b", "events-c")
DEPTHS = common.sized((100_000, 1_000_000), (1_000, 3_000))
STRIDE = common.sized(397, 7)  # rows between one deep sample's cursor and the next's
SAMPLES = common.sized(300, 20)  # per figure, and as many floors
SECONDS = common.sized(60.0, 10.0)  # per figure: a slow one stops early, after MIN_SAMPLES
MIN_SAMPLES = common.sized(20, 5)
WARMUP = common.sized(5, 2)
TARGET_MS = 50.0
BOUND = 10_000  # core.listing.bounded_total's
# The types an operator filters by, in turn: task.completed most.
FILTER_TYPES = (
    "task.completed", "agent.state_changed", "task.completed", "agent.error_burst", "task.completed",
    "control.pause", "task.started", "alert.firing",
)  # fmt: skip
CHILD = """
import json, sys
from bench import bench_events
print("L10BENCH " + json.dumps(bench_events.measure(json.loads(sys.argv[1]))))
"""

TYPES = (
    "task.completed", "task.started", "agent.state_changed", "agent.error_burst", "agent.cpu_spike", "control.pause",
    "control.resume", "control.stop", "alert.firing", "alert.resolved", "agent.unresponsive",
)  # fmt: skip
# Where each type's share ends, in thousandths of the events: task.completed 60 %, …
SHARES = (600, 750, 830, 870, 900, 925, 950, 955, 975, 990)

# One row per event, in time order (as ingestion writes them). ``kind`` is the type's
# place in TYPES, ``k`` the agent's number: squaring a uniform number makes a few agents
# send most. The severities, messages and data follow their writers (events.services'
# callers).
EVENTS_SQL = """
INSERT INTO events_event (tenant_id, agent_id, uid, type, severity, message, data, occurred_at, received_at)
SELECT tenant_id, CASE WHEN kind IN (8, 9) AND g %% 2 = 0 THEN NULL ELSE md5('agent:' || tenant_id || ':' || k)::uuid END,
    CASE WHEN kind <= 4 AND kind <> 2 THEN md5(tenant_id || ':' || g)::uuid END,
    (%(types)s::text[])[kind + 1],
    CASE kind WHEN 3 THEN 'error' WHEN 4 THEN 'warning' WHEN 5 THEN 'warning' WHEN 7 THEN 'critical' WHEN 10 THEN 'warning'
        WHEN 8 THEN (ARRAY['warning', 'error', 'critical'])[1 + g %% 3]
        WHEN 2 THEN (ARRAY['info', 'info', 'info', 'warning', 'error'])[1 + g %% 5]
        WHEN 1 THEN (ARRAY['debug', 'info'])[1 + g %% 2] ELSE 'info' END,
    CASE kind
        WHEN 0 THEN 'task ' || g || ' done in ' || (100 + g %% 9000) || ' ms'
        WHEN 1 THEN 'task ' || g || ' started'
        WHEN 2 THEN agent || ' is paused (was running).'
        WHEN 3 THEN (1 + g %% 40) || ' upstream errors in one task'
        WHEN 4 THEN 'CPU at ' || (90 + g %% 10) || '%%'
        WHEN 8 THEN 'error rate above 5%% on ' || agent
        WHEN 9 THEN 'Resolved: error rate above 5%% on ' || agent
        WHEN 10 THEN agent || ' has not reported for 90 s.'
        ELSE (ARRAY['pause', 'resume', 'stop'])[kind - 4] || ' of ' || agent || ' by oscar: maintenance window ' || (g %% 97)
    END,
    CASE WHEN kind <= 1 THEN jsonb_build_object('task_id', 't-' || g, 'duration_ms', 100 + g %% 9000, 'tokens', g %% 4000,
            'model', (ARRAY['small', 'large'])[1 + g %% 2])
        WHEN kind = 2 THEN jsonb_build_object('state', 'paused', 'previous_state', 'running', 'desired_state', 'paused')
        WHEN kind BETWEEN 5 AND 7 THEN jsonb_build_object('by', 'oscar', 'reason', 'maintenance window ' || (g %% 97),
            'change', jsonb_build_object('desired_state', jsonb_build_object('from', 'running', 'to', 'paused')),
            'version', 2 + g %% 50, 'audit_id', g, 'batch_id', NULL)
        WHEN kind IN (8, 9) THEN jsonb_build_object('alert_id', g %% 5000, 'rule_id', g %% 40, 'value', (g %% 100) / 10.0)
        WHEN kind = 4 THEN jsonb_build_object('cpu_percent', 90 + g %% 10)
        WHEN kind = 10 THEN jsonb_build_object('last_heartbeat_at', at - interval '90 seconds', 'silent_s', 90)
        ELSE jsonb_build_object('errors', 1 + g %% 40) END,
    at, at + interval '40 milliseconds'
FROM (
    SELECT g, tenant_id, kind, k, 'worker-' || lpad(k::text, 5, '0') AS agent, at
    FROM (
        SELECT g, width_bucket(random() * 1000, %(shares)s::float8[]) AS kind,
            CASE WHEN g %% 50 = 0 THEN %(c)s WHEN g %% 50 < 5 THEN %(b)s ELSE %(main)s END AS tenant_id,
            1 + floor(power(random(), 2) * CASE WHEN g %% 50 = 0 THEN %(c_agents)s WHEN g %% 50 < 5 THEN %(b_agents)s
                ELSE %(main_agents)s END)::int AS k,
            now() - interval '30 days' + (g - random()) * (interval '30 days' / %(n)s) AS at
        FROM generate_series(1, %(n)s) AS g
    ) AS drawn
) AS e
"""

# The floors: the same answers by hand (LIMIT 10001: bounded_total's bound, and one more).
FLOOR_TYPE = "SELECT EXISTS (SELECT 1 FROM events_event WHERE tenant_id = %(tenant)s AND type = %(type)s)"
FLOOR_FILTERED = """
SELECT e.id, e.tenant_id, e.agent_id, e.uid, e.type, e.severity, e.message, e.data, e.occurred_at, e.received_at
FROM events_event e JOIN fleet_agent a ON a.id = e.agent_id
WHERE e.tenant_id = %(tenant)s AND e.type = %(type)s AND a.tenant_id = %(tenant)s AND a.external_id = %(agent)s
    AND e.occurred_at >= %(start)s
ORDER BY e.occurred_at DESC, e.id DESC LIMIT 51
"""
FLOOR_FILTERED_TOTAL = """
SELECT count(*) FROM (SELECT 1 FROM events_event e JOIN fleet_agent a ON a.id = e.agent_id
    WHERE e.tenant_id = %(tenant)s AND e.type = %(type)s AND a.tenant_id = %(tenant)s AND a.external_id = %(agent)s
        AND e.occurred_at >= %(start)s LIMIT 10001) AS s
"""
FLOOR_BY_ID = """
SELECT id, tenant_id, agent_id, uid, type, severity, message, data, occurred_at, received_at FROM events_event
WHERE tenant_id = %(tenant)s AND type = %(type)s AND agent_id = %(agent_id)s AND occurred_at >= %(start)s
ORDER BY occurred_at DESC, id DESC LIMIT 51
"""
FLOOR_BY_ID_TOTAL = """
SELECT count(*) FROM (SELECT 1 FROM events_event
    WHERE tenant_id = %(tenant)s AND type = %(type)s AND agent_id = %(agent_id)s AND occurred_at >= %(start)s LIMIT 10001) AS s
"""
FLOOR_DEEP = """
SELECT id, tenant_id, agent_id, uid, type, severity, message, data, occurred_at, received_at FROM events_event
WHERE tenant_id = %(tenant)s AND (occurred_at, id) < (%(at)s, %(id)s) ORDER BY occurred_at DESC, id DESC LIMIT 51
"""
FLOOR_TENANT_TOTAL = "SELECT count(*) FROM (SELECT 1 FROM events_event WHERE tenant_id = %(tenant)s LIMIT 10001) AS s"
FLOOR_TENANT_ESTIMATE = """
EXPLAIN (FORMAT JSON) SELECT id, tenant_id, agent_id, uid, type, severity, message, data, occurred_at, received_at
FROM events_event WHERE tenant_id = %(tenant)s
"""
AGENT_IDS = "SELECT external_id, id FROM fleet_agent WHERE tenant_id = %(tenant)s"
POSITIONS = """
SELECT occurred_at, id FROM events_event WHERE tenant_id = %(tenant)s ORDER BY occurred_at DESC, id DESC
OFFSET %(depth)s LIMIT %(rows)s
"""

Answer = tuple[list[int], int]  # a page's ids, and its total


def _pg(*, autocommit: bool = True) -> psycopg.Connection[Any]:
    # By name: ``common.pg_connect``'s default database is fixed when common is imported.
    return common.pg_connect(DB_NAME, autocommit=autocommit)


# --- the data ----------------------------------------------------------------------------


def seed() -> int:
    """The three tenants, their agents and events; the main tenant's id."""
    common.recreate_database()
    tenants = [common.seed_tenant(slug).tenant_id for slug in TENANTS]
    with _pg() as conn:
        for tenant_id, agents in zip(tenants, (AGENTS, *OTHER_AGENTS), strict=True):
            conn.execute(common.AGENTS_SQL, {"tenant": tenant_id, "n": agents})
        with common.bulk_load(conn, "events_event") as load:
            conn.execute("SELECT setseed(0.42)")  # the same events every run
            main, b, c = tenants
            conn.execute(
                EVENTS_SQL,
                {
                    "n": EVENTS, "main": main, "b": b, "c": c, "main_agents": AGENTS, "b_agents": OTHER_AGENTS[0],
                    "c_agents": OTHER_AGENTS[1], "types": list(TYPES), "shares": list(SHARES),
                },
            )  # fmt: skip
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE tenant_id = %s), count(*) FROM events_event", [main]
        ).fetchone()
    if row is None or row[1] != EVENTS or row[0] < max(DEPTHS) + (SAMPLES + WARMUP) * STRIDE:
        raise AssertionError(f"{row} events stored, not {EVENTS:,} with enough in the main tenant")
    common.progress(f"{EVENTS:,} events loaded in {load.loaded_s:.0f} s, indexed in {load.indexed_s:.0f} s")
    return main


# --- the figures (in the child process) --------------------------------------------------


def _timed(call: Callable[[], Answer]) -> tuple[float, Answer]:
    started = time.perf_counter()
    answer = call()
    return (time.perf_counter() - started) * 1000, answer


def _pairs(code: Callable[[int], Answer], floor: Callable[[int], Answer]) -> dict[str, Any]:
    """``code(i)`` and ``floor(i)`` for i = 0, 1, …, alternating which goes first, until
    ``SAMPLES`` or ``SECONDS``; their times (ms), and the answers' sizes."""
    for i in range(WARMUP):
        code(SAMPLES + i), floor(SAMPLES + i)
    times: list[float] = []
    floors: list[float] = []
    totals: list[int] = []
    began = time.perf_counter()
    for i in range(SAMPLES):
        if i >= MIN_SAMPLES and time.perf_counter() - began > SECONDS:
            break
        if i % 2 == 0:
            took, answer = _timed(lambda: code(i))  # noqa: B023 - called at once
            floor_took, expected = _timed(lambda: floor(i))  # noqa: B023
        else:
            floor_took, expected = _timed(lambda: floor(i))  # noqa: B023
            took, answer = _timed(lambda: code(i))  # noqa: B023
        if answer[0] != expected[0] or (answer[1] != expected[1] and min(answer[1], expected[1]) <= BOUND):
            raise AssertionError(f"sample {i}: the console answered {answer}, the floor {expected}")
        times.append(took)
        floors.append(floor_took)
        totals.append(answer[1])
    return {"times": times, "floors": floors, "totals": totals, "rows": len(answer[0])}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Every figure, in this process (the child): Django set up for this bench's database."""
    from bench import bench_fanout

    with common.own_stores(DB_NAME, common.REDIS_DB):
        bench_fanout.django_setup()

    from django.utils import timezone

    from core.listing import make_cursor
    from events import selectors
    from events.facade import EventQuery, EventRecord, EventService

    tenant: int = spec["tenant"]
    rng = random.Random(42)
    # Agents drawn as the events were: the busier, the likelier to be looked at.
    agents = [f"worker-{1 + int(AGENTS * rng.random() ** 2):05d}" for _ in range(SAMPLES + WARMUP)]

    def console(params: dict[str, Any], *, known_types: bool = True) -> Answer:
        # What EventService.query_events and GET /api/v1/events do with a tenant's query.
        found = selectors.page(tenant, params, known_types=known_types)
        records = [EventRecord.of(e) for e in found.events]
        return [r.id for r in records], found.total.value

    def filtered(i: int) -> dict[str, Any]:
        start = timezone.now() - timedelta(hours=24)
        return {"type": FILTER_TYPES[i % len(FILTER_TYPES)], "agent": agents[i], "start": start}

    with _pg() as conn:

        def by_hand(statement: str, values: dict[str, Any]) -> list[tuple[Any, ...]]:
            return conn.execute(statement, values, prepare=False).fetchall()

        def floor_total(values: dict[str, Any], count: str, estimate: str | None = None) -> int:
            ((counted,),) = by_hand(count, values)
            if counted <= BOUND or estimate is None:
                return int(counted)
            ((plan,),) = by_hand(estimate, values)
            return max(int(plan[0]["Plan"]["Plan Rows"]), BOUND + 1)

        ids = {external_id: agent_id for external_id, agent_id in by_hand(AGENT_IDS, {"tenant": tenant})}

        def floor_filtered(i: int, *, check_type: bool = True, by_id: bool = False) -> Answer:
            values = {"tenant": tenant, **filtered(i)}
            values["agent_id"] = ids[values["agent"]]
            if check_type and not by_hand(FLOOR_TYPE, values)[0][0]:
                raise AssertionError(f"no {values['type']} event")
            page = by_hand(FLOOR_BY_ID if by_id else FLOOR_FILTERED, values)
            return [r[0] for r in page[:50]], floor_total(values, FLOOR_BY_ID_TOTAL if by_id else FLOOR_FILTERED_TOTAL)

        def console_filtered(i: int, *, known_types: bool = True, by_id: bool = False) -> Answer:
            f = filtered(i)
            params = {
                "event_type": f["type"],
                "agent_id": str(ids[f["agent"]]) if by_id else f["agent"],
                "start_time": f["start"].isoformat(),
                "limit": "50",
            }
            return console(params, known_types=known_types)

        results: dict[str, Any] = {}
        results["filtered"] = _pairs(console_filtered, floor_filtered)
        results["filtered_page"] = _pairs(
            lambda i: console_filtered(i, known_types=False), lambda i: floor_filtered(i, check_type=False)
        )
        results["filtered_by_id"] = _pairs(
            lambda i: console_filtered(i, by_id=True), lambda i: floor_filtered(i, by_id=True)
        )
        # The Python API's own answer is the one measured.
        f = filtered(0)
        service = asyncio.run(EventService().query_events(EventQuery(
            tenant_id=tenant, event_type=f["type"], agent_id=f["agent"], start_time=f["start"])))  # fmt: skip
        if [e.id for e in service.events] != console_filtered(0)[0]:
            raise AssertionError("EventService.query_events answers another page than the one measured")

        for depth in DEPTHS:
            rows = by_hand(POSITIONS, {"tenant": tenant, "depth": depth, "rows": (SAMPLES + WARMUP) * STRIDE})
            after = rows[::STRIDE]
            cursors = [make_cursor(kind=selectors.KIND, tenant_id=tenant, at=at, pk=pk) for at, pk in after]

            def console_deep(i: int) -> Answer:
                return console({"cursor": cursors[i], "limit": "50"})  # noqa: B023 - called in this turn

            def floor_deep(i: int) -> Answer:
                at, pk = after[i]  # noqa: B023 - called in this turn
                values = {"tenant": tenant, "at": at, "id": pk}
                page = by_hand(FLOOR_DEEP, values)
                return [r[0] for r in page[:50]], floor_total(values, FLOOR_TENANT_TOTAL, FLOOR_TENANT_ESTIMATE)

            results[f"deep_{depth}"] = _pairs(console_deep, floor_deep)
    return results


# --- the run -----------------------------------------------------------------------------


def run() -> list[Row]:
    with common.own_stores(DB_NAME, common.REDIS_DB):
        pinning = common.pin_client()
        common.progress(f"seeding {EVENTS:,} events of {AGENTS:,} agents")
        tenant_id = seed()
        common.progress("measuring in a process of its own on core 0")
        measured = common.run_child(CHILD, [json.dumps({"tenant": tenant_id})], what="measuring", timeout=1800)
    return _rows(measured, pinning)


def _p(values: list[float], q: float) -> float:
    return common.percentile(values, q)


def _row(figure: str, data: dict[str, Any], note: str) -> Row:
    times, floors = data["times"], data["floors"]
    return Row(
        figure,
        "ms",
        _p(times, 95),
        target=TARGET_MS,
        floor=_p(floors, 95),
        note=f"p50 {_p(times, 50):.2f} ms, p99 {_p(times, 99):.2f} ms over {len(times)} queries (floor p50 "
        f"{_p(floors, 50):.2f} ms); {note}",
    )


def _rows(measured: dict[str, Any], pinning: str) -> list[Row]:
    filtered, page = measured["filtered"], measured["filtered_page"]
    totals = sorted(filtered["totals"])
    rows = [
        _row(
            "events: filtered first page + total (API), p95",
            filtered,
            f"selectors.page with the type check, as GET /api/v1/events and EventService.query_events read it: "
            f"one type, one agent, the last 24 h, 50 a page of {EVENTS:,} events; totals {totals[0]:,} to "
            f"{totals[-1]:,}; floor: EXISTS for the type, the page's SELECT and a count of at most {BOUND + 1:,}, "
            f"by hand; {pinning}",
        ),
        _row(
            "events: filtered first page + total (page), p95",
            page,
            "the same queries without the type check (known_types=False, as the events page reads them); floor: "
            "the page's SELECT and the count",
        ),
        _row(
            "events: filtered first page + total, the agent by its id (API), p95",
            measured["filtered_by_id"],
            "the same queries as the first, naming the agent by its id (agent_id takes an id or an external id); "
            "floor: EXISTS for the type, the page's SELECT on the events' agent_id and the count",
        ),
    ]
    for depth in DEPTHS:
        data = measured[f"deep_{depth}"]
        rows.append(
            _row(
                f"events: a page {depth:,} rows deep + total, p95",
                data,
                f"selectors.page from a cursor {depth:,} rows (and on, {STRIDE} a sample) down the main tenant's "
                f"list, unfiltered, with its total (past 10,000, the planner's estimate); floor: the keyset as a row comparison, the count and "
                f"the planner's estimate",
            )
        )
    return rows
