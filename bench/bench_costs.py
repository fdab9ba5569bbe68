"""Cost summaries at ten million usage records, and what pricing at ingest costs ingest
(docs/costs.md; docs/performance.md, "Costs").

- Data (a PostgreSQL database of its own): after ``migrate``, the platform's price list
  through ``manage.py import_prices`` (about 1,800 prices from the installed genai-prices
  table); three tenants through the app's own code (``common.seed_tenant``), their agents
  (``AGENTS`` in the main tenant, 300 and 50 in the others) by one ``INSERT … SELECT
  generate_series``; then ``RECORDS`` usage records by another, in time order as ingest
  writes them, over the last 35 days: 90 % to the main tenant, 8 % and 2 % to the others,
  a few agents much busier than most. Each agent has a model of its own (80 % of its
  records) and another for the rest, among ``MODELS`` (real names: ``gpt-4o``,
  ``claude-sonnet-4-20250514``, …); 1 % of all records are of ``UNPRICED``, a model the
  list has no price for (cost unknown, ``NULL``). Every priced record has the price the
  console's own price book finds for its model (``costs.pricing.book``, read in a child
  process) and its cost computed in SQL from that price's figures, to the nano-dollar;
  each has a sender's ``uid``, as the SDK sends them. The table's indexes are dropped for
  the load and built again after it, then ``VACUUM ANALYZE``.
- Rollups: ``costs.rollups.rollup_recent`` in a loop, as the five-minute task would run it
  on a fresh install with this backlog, until its mark reaches now; timed (a figure: what
  catching up 35 days of usage costs), each hour's rebuild timed too. Every rollup table
  (per agent and model and hour, per model and hour, per agent and day) must hold every
  record and the records' whole cost. Then ``costs.rollups.rollup`` three times, caught
  up: what each routine run costs at this size.
- Summaries, in a process of its own on core 0, Django set up as the server is, warm:
  ``costs.selectors.breakdown(main, now − 30 days, now)`` (the cost page's and
  ``CostService``'s by-model summary; target: p95 under 100 ms) and ``sums(…,
  by="agent_id")`` (the page's top agents; measured, with no target). Floors, in the same process, alternating with the
  figures: the same sums over the raw records by hand with psycopg (``GROUP BY model``,
  and ``GROUP BY agent_id``), which the rollups are there to beat: the ratio raw/rollup is
  in each note. Each answer must be the floor's, to the nano-dollar.
- Pricing at ingest: ``costs.services.usage_record`` in a transaction per batch (as
  ``ingest.services.usage_ingest`` calls it), ``BATCHES`` batches of 100 records, each one
  agent's records of its models (1 % of them unpriced), stamped the last minutes, each
  with a fresh ``uid``, into the 10-million-row table; three ways, in turn batch by batch,
  the same records each way (fresh uids):
  1. priced: the console as it is (the price book's version read once per batch, each
     record's price found, its cost computed, the cost and price stored);
  2. bypassed: inside this process only, ``costs.services.pricing`` answers with a book
     that has no price and reads nothing: no version read, no lookup, no arithmetic;
     the records are stored without a cost or a price, as a console that did not price
     at ingest would store them. This is "without pricing" (target: pricing adds under
     10 %). It rightly counts against pricing what storing a price costs (the foreign-key
     check on the price, the cost's column); but each of its unpriced rows adds an entry
     to the partial index of unpriced usage, which a console without pricing would not
     keep, so it flatters pricing somewhat. Hence a third way:
  3. answered: the same stand-in, but answering each record with the price and cost the
     real book gives it, worked out before the timing (dict look-ups): the stored rows
     are the priced ones, value for value, so the difference from 1 is exactly pricing's
     own work in Python (the version read, the look-ups, the ``Decimal`` arithmetic).
     Judged against the same target.
  Pricing's own work is also timed alone on the same batches (the book, then each
  record's price and cost, no database), as a figure free of the database's noise.
  A model without a price as the baseline was not chosen: it still runs the lookup (an
  unknown name is its slowest path, every prefix is tried), so it is not "without
  pricing". Timing ``usage_record`` alone, not the whole request, makes the overhead the
  largest it can honestly be said to be: HTTP, parsing and the agents' lookup would all
  add to the denominator.
"""

from __future__ import annotations

import gc
import json
import random
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from unittest import mock

import psycopg

from bench import common
from bench.common import Row

DB_NAME = common.db_name("l10bench_costs")
RECORDS = common.sized(10_000_000, 10_000)
AGENTS = common.sized(10_000, 50)  # the main tenant's
OTHER_AGENTS = (common.sized(300, 10), common.sized(50, 5))
TENANTS = ("costs-main", "costs-b", "costs-c")
# The records' span: the last 35 days, less the few hours the first rollup run may start
# after the load (rollup_recent reaches back 35 days from its own now).
SPREAD = timedelta(days=35) - timedelta(hours=3)
RANGE = timedelta(days=30)  # the summaries'
SAMPLES = common.sized(100, 10)  # per figure, and as many floors
SECONDS = common.sized(90.0, 10.0)  # per figure: a slow one stops early, after MIN_SAMPLES
MIN_SAMPLES = common.sized(12, 3)
WARMUP = common.sized(2, 1)
SUMMARY_TARGET_MS = 100.0
STEADY_RUNS = 3
STEADY_CAP = common.sized(120.0, 60.0)  # s: a routine run still going then is stopped
BATCH = 100  # records per ingest batch
BATCHES = common.sized(500, 6)  # per way
WARMUP_BATCHES = common.sized(10, 2)  # per way, not timed
OVERHEAD_TARGET = 10.0  # %
MODELS = (
    "gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "claude-sonnet-4-20250514", "claude-3-5-haiku-20241022",
    "gemini-2.5-flash",
)  # fmt: skip
UNPRICED = "acme-support-ft-7b"  # an in-house fine-tune: no price in the list
CHILD = """
import json, sys
from bench import bench_costs
print("L10BENCH " + json.dumps(bench_costs.child(sys.argv[1], json.loads(sys.argv[2]))))
"""

# One row per record, in time order. ``m`` is the model's place in the arrays (1: the
# unpriced one; 2 + k % 6: agent k's own model; another for a fifth of its records), ``k``
# the agent's number: squaring a uniform number makes a few agents use most. The cost is
# the price's figures applied as costs.pricing.cost applies them (cached input at its
# rate), to the nano-dollar; NULL for the unpriced model (its figures are NULL).
USAGE_SQL = """
INSERT INTO costs_usagerecord (tenant_id, agent_id, uid, model, input_tokens, output_tokens, api_calls,
    cached_input_tokens, cost_usd, price_id, occurred_at, received_at, flagged, flag_reason)
SELECT tenant_id, md5('agent:' || tenant_id || ':' || k)::uuid, md5('usage:' || g)::uuid, (%(models)s::text[])[m],
    input, output, 1, cached,
    round(((input - cached) * (%(input)s::numeric[])[m] + cached * (%(cached)s::numeric[])[m]
        + output * (%(output)s::numeric[])[m]) / 1000000 + (%(per_call)s::numeric[])[m], 9),
    (%(price_ids)s::bigint[])[m], at, at + interval '2 seconds', false, ''
FROM (
    SELECT g, tenant_id, k, at, input, output,
        CASE WHEN random() < 0.4 THEN floor(input * 0.6)::int ELSE 0 END AS cached,
        CASE WHEN u < 0.01 THEN 1 WHEN u < 0.8 THEN 2 + k %% 6 ELSE 2 + (k %% 6 + 1 + k / 6 %% 5) %% 6 END AS m
    FROM (
        SELECT g, random() AS u,
            CASE WHEN g %% 50 = 0 THEN %(c)s WHEN g %% 50 < 5 THEN %(b)s ELSE %(main)s END AS tenant_id,
            1 + floor(power(random(), 2) * CASE WHEN g %% 50 = 0 THEN %(c_agents)s WHEN g %% 50 < 5 THEN %(b_agents)s
                ELSE %(main_agents)s END)::int AS k,
            300 + floor(power(random(), 2) * 12000)::int AS input,
            40 + floor(random() * 1200)::int AS output,
            now() - %(spread)s + (g - random()) * (%(spread)s / %(n)s) AS at
        FROM generate_series(1, %(n)s) AS g
    ) AS drawn
) AS r
"""

# The floors: the summaries over the raw records, by hand.
FLOOR_BY_MODEL = """
SELECT model, sum(cost_usd), sum(input_tokens + output_tokens), count(*), count(*) FILTER (WHERE cost_usd IS NULL)
FROM costs_usagerecord WHERE tenant_id = %(tenant)s AND occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY model
"""
FLOOR_BY_AGENT = FLOOR_BY_MODEL.replace("SELECT model", "SELECT agent_id").replace(
    "GROUP BY model", "GROUP BY agent_id"
)

# key → (cost, tokens, records, unpriced)
Lines = dict[str, tuple[Decimal | None, int, int, int]]


def _pg(*, autocommit: bool = True) -> psycopg.Connection[Any]:
    # By name: ``common.pg_connect``'s default database is fixed when common is imported.
    return common.pg_connect(DB_NAME, autocommit=autocommit)


def _child(phase: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``child(phase, spec)`` in a process of its own on core 0; what it returned."""
    return common.run_child(CHILD, [phase, json.dumps(spec)], what=phase)


def child(phase: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A phase in this process (the child): Django set up for this bench's database."""
    from bench import bench_fanout

    with common.own_stores(DB_NAME, common.REDIS_DB):
        bench_fanout.django_setup()
    phases: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "prices": _prices, "rollup": _rollup, "measure": _measure,
    }  # fmt: skip
    return phases[phase](spec)


# --- the data ----------------------------------------------------------------------------


def _prices(spec: dict[str, Any]) -> dict[str, Any]:
    """Each model's price as the console's price book finds it for the main tenant, the same
    over the whole span (else the seeded costs would not be the console's)."""
    from django.utils import timezone

    from costs import pricing

    book = pricing.book(spec["tenant"])
    now = timezone.now()
    found: dict[str, Any] = {}
    for model in MODELS:
        price, first = book.find(model, now), book.find(model, now - SPREAD - timedelta(days=1))
        if price is None or first is None or price.id != first.id:
            raise AssertionError(f"{model}: no one price over the last 35 days ({first} then {price})")
        cached = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
        found[model] = [price.id, *map(str, (price.input_per_mtok, cached, price.output_per_mtok, price.per_call))]
    if book.find(UNPRICED, now) is not None:
        raise AssertionError(f"the price list has a price for {UNPRICED}")
    return found


def seed() -> tuple[int, dict[str, Any]]:
    """The price list, the three tenants, their agents and usage; the main tenant's id and
    what the load took."""
    common.recreate_database()
    imported = common.manage("import_prices").splitlines()[0]
    tenants = [common.seed_tenant(slug).tenant_id for slug in TENANTS]
    main, b, c = tenants
    prices = _child("prices", {"tenant": main})
    figures = [[None] + [Decimal(prices[m][i]) for m in MODELS] for i in range(1, 5)]
    with _pg() as conn:
        (list_size,) = conn.execute("SELECT count(*) FROM costs_modelprice WHERE tenant_id IS NULL").fetchone() or (0,)
        for tenant_id, agents in zip(tenants, (AGENTS, *OTHER_AGENTS), strict=True):
            conn.execute(common.AGENTS_SQL, {"tenant": tenant_id, "n": agents})
        with common.bulk_load(conn, "costs_usagerecord") as load:
            conn.execute("SELECT setseed(0.42)")  # the same records every run
            conn.execute(
                USAGE_SQL,
                {
                    "n": RECORDS, "main": main, "b": b, "c": c, "main_agents": AGENTS, "b_agents": OTHER_AGENTS[0],
                    "c_agents": OTHER_AGENTS[1], "spread": SPREAD, "models": [UNPRICED, *MODELS],
                    "price_ids": [None, *(prices[m][0] for m in MODELS)], "input": figures[0], "cached": figures[1],
                    "output": figures[2], "per_call": figures[3],
                },
            )  # fmt: skip
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE tenant_id = %s), count(*) FILTER (WHERE cost_usd IS NULL), "
            "pg_total_relation_size('costs_usagerecord') FROM costs_usagerecord",
            [main],
        ).fetchone()
    if row is None or row[0] != RECORDS or not 0.005 * RECORDS <= row[2] <= 0.02 * RECORDS:
        raise AssertionError(f"{row} records stored, not {RECORDS:,} with about 1 % unpriced")
    common.progress(f"{RECORDS:,} usage records loaded in {load.loaded_s:.0f} s, indexed in {load.indexed_s:.0f} s")
    return main, {
        "loaded_s": load.loaded_s, "indexed_s": load.indexed_s, "main_records": row[1], "unpriced": row[2],
        "table_mb": row[3] / 2**20, "prices": list_size, "imported": imported,
    }  # fmt: skip


class _Watch:
    """``costs.rollups.rebuild``, watched: the (tenant, hour) pairs it was given and each
    call's time."""

    def __init__(self, rebuild: Callable[[int, Any], int]) -> None:
        self.rebuild = rebuild
        self.hours: set[tuple[int, Any]] = set()
        self.seconds: list[tuple[int, float]] = []  # (tenant, seconds) of each call

    def __call__(self, tenant_id: int, hour: Any) -> int:
        self.hours.add((tenant_id, hour))
        started = time.perf_counter()
        written = self.rebuild(tenant_id, hour)
        self.seconds.append((tenant_id, time.perf_counter() - started))
        return written


def _rollup(spec: dict[str, Any]) -> dict[str, Any]:
    """The rollups built by the routine run in a loop until caught up (timed), each table
    checked against the records; then routine runs, caught up."""
    from django.db.models import Count, Sum
    from django.utils import timezone

    from costs import rollups
    from costs.models import CostAgentDay, CostHour, CostModelHour, UsageRecord

    now = timezone.now()
    began = time.perf_counter()
    runs = written = 0
    watch = _Watch(rollups.rebuild)
    with mock.patch.object(rollups, "rebuild", watch):
        while (rollups.mark_until() or now - timedelta(days=999)) < now:
            written += rollups.rollup_recent(now=now)
            runs += 1
    took = time.perf_counter() - began
    stored = UsageRecord.objects.aggregate(n=Count("pk"), cost=Sum("cost_usd"))
    unpriced = UsageRecord.objects.filter(cost_usd__isnull=True).count()
    counts: dict[str, int] = {}
    for table in (CostHour, CostModelHour, CostAgentDay):
        rolled = table.objects.aggregate(n=Count("pk"), records=Sum("records"), cost=Sum("cost_usd"),
                                         unpriced=Sum("unpriced_records"))  # fmt: skip
        if (rolled["records"], rolled["cost"], rolled["unpriced"]) != (stored["n"], stored["cost"], unpriced):
            raise AssertionError(f"{table.__name__} holds {rolled}, the records {stored} and {unpriced} unpriced")
        counts[table.__name__] = rolled["n"]
    main = [took_s * 1000 for tenant_id, took_s in watch.seconds if tenant_id == spec["tenant"]]
    others = [took_s * 1000 for tenant_id, took_s in watch.seconds if tenant_id != spec["tenant"]]
    built = {
        "seconds": took, "runs": runs, "written": written, "rows": counts, "hours": len(watch.hours),
        "rebuilds": len(watch.seconds), "main_p50_ms": common.percentile(main, 50), "main_hours": len(main),
        "main_max_ms": max(main), "others_p50_ms": common.percentile(others, 50), "main_s": sum(main) / 1000,
    }  # fmt: skip
    steady: list[dict[str, Any]] = []
    for _ in range(STEADY_RUNS):
        started = time.perf_counter()
        watch = _Watch(rollups.rebuild)
        with mock.patch.object(rollups, "rebuild", watch):
            rollups.rollup()
        steady.append({"seconds": time.perf_counter() - started, "calls": len(watch.seconds),
                       "hours": len(watch.hours)})  # fmt: skip
    return {"built": built, "steady": steady}


# --- the figures (in the child process) --------------------------------------------------


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    answer = call()
    return (time.perf_counter() - started) * 1000, answer


def _pairs(code: Callable[[Any], Any], floor: Callable[[Any], Any]) -> dict[str, Any]:
    """``code(now)`` and ``floor(now)`` for the same now, alternating which goes first,
    until ``SAMPLES`` or ``SECONDS``; their times (ms). Each answer must be the floor's."""
    from django.utils import timezone

    times: list[float] = []
    floors: list[float] = []
    began = time.perf_counter()
    for i in range(-WARMUP, SAMPLES):
        if i >= MIN_SAMPLES and time.perf_counter() - began > SECONDS:
            break
        now = timezone.now()
        if i % 2 == 0:
            took, answer = _timed(lambda: code(now))  # noqa: B023 - called at once
            floor_took, expected = _timed(lambda: floor(now))  # noqa: B023
        else:
            floor_took, expected = _timed(lambda: floor(now))  # noqa: B023
            took, answer = _timed(lambda: code(now))  # noqa: B023
        if answer != expected:
            raise AssertionError(f"sample {i}: the console answered\n{answer}\nthe records say\n{expected}")
        if i >= 0:
            times.append(took)
            floors.append(floor_took)
    return {"times": times, "floors": floors}


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    from django.utils import timezone

    from costs import selectors
    from costs.models import CostAgentDay, CostHour, CostModelHour

    tenant: int = spec["tenant"]

    def breakdown(now: Any) -> dict[str, Any]:
        found = selectors.breakdown(tenant, now - RANGE, now)
        return {
            "total": found.total_cost_usd, "cost": found.cost_by_model, "tokens": found.tokens_by_model,
            "unpriced": found.unpriced_records, "unpriced_models": found.unpriced_models,
        }  # fmt: skip

    def by_agent(now: Any) -> Lines:
        found = selectors.sums(tenant, now - RANGE, now, by="agent_id")
        return {k: (line.cost, line.tokens, line.records, line.unpriced) for k, line in found.items()}

    with _pg() as conn:

        def by_hand(statement: str, now: Any) -> Lines:
            rows = conn.execute(statement, {"tenant": tenant, "start": now - RANGE, "end": now}, prepare=False)
            return {str(key): (cost, int(tokens), int(n), int(unpriced)) for key, cost, tokens, n, unpriced in rows}

        def floor_breakdown(now: Any) -> dict[str, Any]:
            lines = by_hand(FLOOR_BY_MODEL, now)
            costs = {m: cost for m, (cost, _, _, _) in lines.items() if cost is not None}
            return {
                "total": sum(costs.values(), Decimal(0)), "cost": costs,
                "tokens": {m: tokens for m, (_, tokens, _, _) in lines.items()},
                "unpriced": sum(n for _, _, _, n in lines.values()),
                "unpriced_models": sorted(m for m, (_, _, _, n) in lines.items() if n),
            }  # fmt: skip

        results: dict[str, Any] = {
            "by_model": _pairs(breakdown, floor_breakdown),
            "by_agent": _pairs(by_agent, lambda now: by_hand(FLOOR_BY_AGENT, now)),
        }
        row = conn.execute(
            "SELECT count(*) FROM costs_usagerecord WHERE tenant_id = %s AND occurred_at >= now() - %s", [tenant, RANGE]
        ).fetchone()
        results["raw_rows"] = row[0] if row else 0
    since = timezone.now() - RANGE
    results["cost_hours"] = CostHour.objects.filter(tenant_id=tenant, hour__gte=since).count()
    results["model_hours"] = CostModelHour.objects.filter(tenant_id=tenant, hour__gte=since).count()
    results["agent_days"] = CostAgentDay.objects.filter(tenant_id=tenant, day__gte=since).count()
    results["ingest"] = _ingest(tenant)
    return results


class _Book:
    """A price book that answers from a dict, reading nothing."""

    def __init__(self, prices: dict[str, Any]) -> None:
        self.prices = prices

    def find(self, model: str, at: Any) -> Any:
        return self.prices.get(model)


WAYS = ("priced", "bypassed", "answered")


def _ingest(tenant: int) -> dict[str, Any]:
    """``usage_record`` three ways (the module's docstring), in turn a block at a time."""
    from uuid import uuid4

    from django.db import transaction
    from django.utils import timezone

    from costs import pricing, services
    from costs.services import NewUsage

    with _pg() as conn:
        agents = [r[0] for r in conn.execute("SELECT id FROM fleet_agent WHERE tenant_id = %s ORDER BY external_id",
                                             [tenant])]  # fmt: skip
    rng = random.Random(11)
    now = timezone.now()
    total = BATCHES + WARMUP_BATCHES
    # Each batch one agent's (an SDK sends its own records), as the seed draws them.
    shapes: list[tuple[Any, list[tuple[str, int, int, int, Any]]]] = []
    for _ in range(total):
        k = int(len(agents) * rng.random() ** 2)
        own, other = MODELS[k % 6], MODELS[(k % 6 + 1 + k // 6 % 5) % 6]
        records = []
        for j in range(BATCH):
            u = rng.random()
            model = UNPRICED if u < 0.01 else own if u < 0.8 else other
            tokens_in = 300 + int(rng.random() ** 2 * 12000)
            cached = int(tokens_in * 0.6) if rng.random() < 0.4 else 0
            at = now - timedelta(seconds=120 * (BATCH - j) / BATCH)  # the last two minutes
            records.append((model, tokens_in, 40 + int(rng.random() * 1200), cached, at))
        shapes.append((agents[k], records))
    made = {
        way: [
            [NewUsage(agent, model, at, tokens_in, out, 1, uid=uuid4(), cached_input_tokens=cached)
             for model, tokens_in, out, cached, at in records]
            for agent, records in shapes
        ]
        for way in WAYS
    }  # fmt: skip

    # The answers the real book gives, worked out before the timing.
    book = pricing.book(tenant)
    answers = {m: book.find(m, now) for m in (*MODELS, UNPRICED)}
    costs: dict[tuple[int, int, int, int, int], Decimal] = {}
    for batch in made["answered"]:
        for r in batch:
            price = answers[r.model]
            if price is not None:
                key = (price.id, r.input_tokens, r.output_tokens, r.cached_input_tokens, r.api_calls)
                costs[key] = pricing.cost(
                    price, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                    cached_input_tokens=r.cached_input_tokens, api_calls=r.api_calls,
                )  # fmt: skip
    answered_book, empty_book = _Book(answers), _Book({})

    def answered_cost(
        price: Any, *, input_tokens: int, output_tokens: int, cached_input_tokens: int, api_calls: int
    ) -> Decimal:
        return costs[(price.id, input_tokens, output_tokens, cached_input_tokens, api_calls)]

    stand_ins: dict[str, Any] = {
        "priced": pricing,
        "bypassed": SimpleNamespace(book=lambda tenant_id: empty_book, cost=pricing.cost),
        "answered": SimpleNamespace(book=lambda tenant_id: answered_book, cost=answered_cost),
    }
    # The batches made up front are not the collector's to scan again and again: a server
    # holds no such heap of records, and every way would pay for it, the busiest most.
    gc.collect()
    gc.freeze()
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    # Batch by batch, the three ways in turn (each first in turn), so the machine's drift
    # and the other work on it fall on all three alike.
    for b in range(total):
        for way in WAYS[b % 3 :] + WAYS[: b % 3]:
            with mock.patch.object(services, "pricing", stand_ins[way]):
                started = time.perf_counter()
                with transaction.atomic():  # as ingest.services.usage_ingest calls it
                    stored = services.usage_record(tenant_id=tenant, records=made[way][b])
                took = time.perf_counter() - started
            if stored != (BATCH, 0):
                raise AssertionError(f"{way} batch {b}: {stored} (stored, duplicates)")
            if b >= WARMUP_BATCHES:
                times[way].append(took)
    # Pricing's own work timed alone, on the same records: the book (its version read),
    # then each record's price found and its cost computed, as usage_record does.
    work: list[float] = []
    for batch in made["priced"][WARMUP_BATCHES:]:
        started = time.perf_counter()
        prices = pricing.book(tenant)
        for r in batch:
            price = prices.find(r.model, r.occurred_at)
            if price is not None:
                pricing.cost(
                    price, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                    cached_input_tokens=r.cached_input_tokens, api_calls=r.api_calls,
                )  # fmt: skip
        work.append(time.perf_counter() - started)
    # What each way stored: the priced and the answered rows are the same rows.
    stored_as: dict[str, Any] = {}
    with _pg() as conn:
        for way in WAYS:
            uids = [r.uid for batch in made[way] for r in batch]
            stored_as[way] = conn.execute(
                "SELECT count(*), count(cost_usd), count(price_id), sum(cost_usd) FROM costs_usagerecord "
                "WHERE tenant_id = %s AND uid = ANY(%s)",
                [tenant, uids],
            ).fetchone()
    priced, bypassed, answered = (stored_as[w] for w in WAYS)
    if priced != answered or priced[0] != total * BATCH or priced[1] != priced[2] or priced[1] < 0.95 * priced[0]:
        raise AssertionError(f"priced rows {priced}, answered rows {answered}")
    if bypassed[0] != total * BATCH or bypassed[1] or bypassed[2]:
        raise AssertionError(f"rows stored with pricing bypassed: {bypassed}")
    return {"times": times, "work": work, "priced_rows": priced[1], "rows": priced[0]}


# --- the run -----------------------------------------------------------------------------


def run() -> list[Row]:
    with common.own_stores(DB_NAME, common.REDIS_DB):
        pinning = common.pin_client()
        common.progress(f"seeding {RECORDS:,} usage records of {AGENTS:,} agents")
        tenant_id, seeded = seed()
        common.progress("rolling up every hour (costs.rollups.rollup_recent until caught up)")
        rolled = _child("rollup", {"tenant": tenant_id})
        built = rolled["built"]
        common.progress(
            f"rolled up in {built['seconds']:.0f} s ({built['runs']} runs, {built['rows']['CostHour']:,} hour rows)"
        )
        with _pg() as conn:
            conn.execute("VACUUM ANALYZE costs_costhour, costs_costmodelhour, costs_costagentday")
        common.progress("measuring in a process of its own on core 0")
        measured = _child("measure", {"tenant": tenant_id})
    return _rows(seeded, rolled, measured, pinning)


def _p(values: list[float], q: float) -> float:
    return common.percentile(values, q)


def _summary(figure: str, data: dict[str, Any], note: str, *, target: float | None = SUMMARY_TARGET_MS) -> Row:
    times, floors = data["times"], data["floors"]
    return Row(
        figure,
        "ms",
        _p(times, 95),
        target=target,
        floor=_p(floors, 95),
        note=f"p50 {_p(times, 50):.2f} ms over {len(times)} summaries (floor p50 {_p(floors, 50):.2f} ms); the raw "
        f"sum takes {_p(floors, 95) / _p(times, 95):.1f}× the rollups' time at p95, {_p(floors, 50) / _p(times, 50):.1f}× "
        f"at p50; {note}",
    )


def _rows(seeded: dict[str, Any], rolled: dict[str, Any], measured: dict[str, Any], pinning: str) -> list[Row]:
    ingest = measured["ingest"]
    times = ingest["times"]
    rate = {way: len(times[way]) * BATCH / sum(times[way]) for way in WAYS}
    median = {way: _p(times[way], 50) * 1000 for way in WAYS}
    work = _p(ingest["work"], 50) * 1000

    def overhead(way: str) -> float:
        return (rate[way] / rate["priced"] - 1) * 100

    built, steady = rolled["built"], rolled["steady"]
    routine = "costs.rollups.rollup (the five-minute task) once caught up, each run: " + "; ".join(
        f"{r['seconds']:.2f} s, {r['calls']:,} hour rebuilds" for r in steady
    )
    rows = built["rows"]
    return [
        _summary(
            "costs: 30-day tenant summary by model (breakdown), p95",
            measured["by_model"],
            f"costs.selectors.breakdown(main tenant, now - 30 days, now) over {RECORDS:,} records "
            f"({measured['raw_rows']:,} of them the main tenant's last 30 days; {measured['model_hours']:,} by-model hour rows); "
            f"floor: the same sums GROUP BY model over the raw records by hand (psycopg); answers equal; {pinning}",
        ),
        _summary(
            "costs: 30-day tenant summary by agent (sums by agent_id), p95",
            measured["by_agent"],
            f"costs.selectors.sums(…, by='agent_id'), the cost page's top agents ({AGENTS:,} agents): whole days "
            f"from {measured['agent_days']:,} agent-day rows, the range's first and last days' whole hours from "
            f"the {measured['cost_hours']:,} per-agent hour rows of the range, the rest from the records; floor: the "
            "same sums GROUP BY agent_id over the raw records; answers equal; no target: the 100 ms is the tenant's "
            "summary's (by model), and this ranking sums every agent's days (docs/performance.md, \"Costs\")",
            target=None,
        ),
        Row(
            f"costs: {RECORDS:,} records rolled up, 35 days caught up",
            "s",
            built["seconds"],
            note=f"costs.rollups.rollup_recent in a loop: {built['runs']} runs of at most 48 hours, {built['rebuilds']:,} rebuilds of "
            f"{built['hours']:,} (tenant, hour) pairs (a run's last hour is its next run's first), "
            f"{built['main_hours']:,} of them the main tenant's (p50 {built['main_p50_ms']:.0f} ms, max "
            f"{built['main_max_ms']:.0f} ms, {built['main_s']:.0f} s in all; the others' p50 "
            f"{built['others_p50_ms']:.0f} ms); {rows['CostHour']:,} hour rows, "
            f"{rows['CostModelHour']:,} by-model hour rows and {rows['CostAgentDay']:,} agent-day rows, each table "
            f"holding every record and its cost; the load took {seeded['loaded_s']:.0f} s and its indexes "
            f"{seeded['indexed_s']:.0f} s ({seeded['table_mb']:,.0f} MB with indexes; {seeded['unpriced']:,} "
            f"records unpriced); {seeded['imported']}",
        ),
        Row(
            "costs: a routine rollup run, caught up (median)",
            "s",
            sorted(r["seconds"] for r in steady)[len(steady) // 2],
            note=routine,
        ),
        Row(
            f"usage ingest with pricing (usage_record, batches of {BATCH})",
            "records/s",
            rate["priced"],
            better="higher",
            floor=rate["bypassed"],
            note=f"{len(times['priced'])} batches of {BATCH} records (one agent's, {len(MODELS)} models and 1 % "
            f"unpriced) each in a transaction, into a table of {RECORDS:,}; median batch {median['priced']:.2f} ms; "
            f"floor: the same records with pricing bypassed (stored unpriced), median batch {median['bypassed']:.2f} ms",
        ),
        Row(
            "pricing at ingest: added to ingest without pricing",
            "%",
            overhead("bypassed"),
            target=OVERHEAD_TARGET,
            note=f"{rate['bypassed']:,.0f} records/s without pricing, {rate['priced']:,.0f} with (by medians: "
            f"{(median['priced'] / median['bypassed'] - 1) * 100:.1f} %)",
        ),
        Row(
            "pricing at ingest: its own work (the same rows, answers known before)",
            "%",
            overhead("answered"),
            target=OVERHEAD_TARGET,
            note=f"{rate['answered']:,.0f} records/s storing the priced rows with the price and cost answered from "
            f"a dict (by medians: {(median['priced'] / median['answered'] - 1) * 100:.1f} %): the version read, the "
            f"look-ups and the Decimal arithmetic; timed alone on the same batches, that work is {work:.2f} ms a batch "
            f"(p50), {work / median['priced'] * 100:.1f} % of a priced batch's median",
        ),
    ]
