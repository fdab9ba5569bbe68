"""One evaluation cycle of a tenant's alert rules on PostgreSQL, beside the raw aggregate
SQL for the same windows.

The target: 200 rules over 10,000 agents, every agent reporting, in under 1 s a cycle
(docs/alerts.md, "Evaluation"). ``L10_BENCH_AGENTS`` sets another fleet size;
``bench/run.py --growth alerts`` runs 1,000, 10,000 and 50,000 agents and prints the
figures side by side.

- Data: after ``migrate``, one tenant (through the app's own code) with ``AGENTS`` agents
  (the ORM's ``bulk_create``),
  each labelled with one of 20 teams and heartbeating within the last 20 s (one in 200
  silent for 90 s), and through
  psycopg ``COPY`` a minute row per agent for each of the last ``MINUTES`` minutes, as
  ingestion writes them: CPU, memory, tokens, requests, errors and latency varying by agent
  and minute, and one agent in ``HOT_EVERY`` past every threshold; then ``VACUUM ANALYZE``.
- Rules: ``RULES`` rules, built in this process with the ORM: each windowed metric and the
  heartbeat age, windows of 5, 10 and 15 minutes, every aggregation, half of them for all
  agents and half for one team, thresholds only the agents in trouble pass, "for" 0 or
  60 s. A tenant's real rules look like this: a few metrics, a few windows.
- Cycles: ``alerts.evaluation.evaluate_tenant`` in this process (core 0), the clock read
  around each call. The first cycle opens the alerts (its writes are reported, not judged);
  the next ``CYCLES`` decide the same fleet again with nothing to change, as a steady
  minute does. Each cycle is checked: the first made transitions, the later ones none.
- Floor: the aggregate statement the cycle runs (``alerts.sql.windows``' text: every metric
  and window at once), over a psycopg connection in the binary format, as the cycle reads
  it: what the read alone costs.
"""

from __future__ import annotations

import io
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench import bench_fanout, common
from bench.common import Row

AGENTS = common.sized(common.bench_agents(10_000), 300)
GROWTH = common.sized((1_000, 10_000, 50_000), (200, 400))
RULES = common.sized(200, 20)
MINUTES = 16  # every window of the rules (at most 15 minutes) is full
CYCLES = common.sized(5, 2)
TEAMS = 20
TARGET_S = 1.0
WINDOWS = (300, 600, 900)
METRICS = ("cpu_percent", "memory_mb", "error_rate", "latency_p95_ms", "tokens_per_min")
AGGREGATIONS = ("avg", "max", "p95", "sum")
# One agent in HOT_EVERY is in trouble; the rest stay well under these thresholds.
HOT_EVERY = 1000
HIGH = {
    "cpu_percent": 90.0,
    "memory_mb": 3500.0,
    "error_rate": 20.0,
    "latency_p95_ms": 1500.0,
    "tokens_per_min": 8000.0,
}


def _seed(agents: int) -> tuple[int, datetime]:
    common.recreate_database()
    seed = common.seed_tenant("alerts")
    from fleet.models import Agent

    bench_fanout.drop_django_connections()  # the database was made again under this process's connection
    Agent.objects.bulk_create(
        [Agent(tenant_id=seed.tenant_id, external_id=f"agent-{i:06d}", name=f"agent-{i:06d}") for i in range(agents)],
        batch_size=2000,
    )
    # The cycles run at :30 of the newest minute and a few seconds after: no minute enters
    # or leaves a window between them, so a steady cycle has nothing to change.
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    rng = random.Random(7)
    with common.pg_connect(autocommit=True) as conn:
        conn.execute(
            "UPDATE fleet_agent SET labels = jsonb_build_object('team', 'team-' || (abs(hashtext(external_id)) %% %s)), "
            "last_heartbeat_at = %s - (CASE WHEN abs(hashtext(external_id)) %% 200 = 0 THEN 90 "
            "ELSE abs(hashtext(external_id)) %% 20 END) * interval '1 second' WHERE tenant_id = %s",
            [TEAMS, now, seed.tenant_id],
        )
        ids = [row[0] for row in conn.execute("SELECT id FROM fleet_agent WHERE tenant_id = %s", [seed.tenant_id])]
        first = now.replace(second=0) - timedelta(minutes=MINUTES - 1)
        text = io.StringIO()
        hot = {agent_id for n, agent_id in enumerate(ids) if n % HOT_EVERY == 0}
        for minute in range(MINUTES):
            at = (first + timedelta(minutes=minute)).isoformat()
            for agent_id in ids:
                if agent_id in hot:  # one agent in HOT_EVERY is in trouble on every metric
                    cpu, memory, tokens, requests, errors, latency = 96.0, 3900.0, 9500, 100, 60, 1900.0
                else:
                    cpu, memory = rng.uniform(5, 70), rng.uniform(100, 2000)
                    tokens, requests = rng.randint(0, 5000), rng.randint(50, 200)
                    errors, latency = rng.randint(0, requests // 50), rng.uniform(10, 800)
                text.write(
                    f"{agent_id}\t{seed.tenant_id}\t{at}\t6\t{6 * cpu}\t{cpu}\t{6 * memory}\t{memory}\t{tokens}\t"
                    f"{requests}\t{errors}\t{latency}\n"
                )
        columns = "agent_id, tenant_id, minute, samples, cpu_sum, cpu_max, memory_sum, memory_max, tokens, requests, errors, latency_p95_ms"
        with conn.cursor().copy(f"COPY fleet_metricminute ({columns}) FROM STDIN") as copy:
            copy.write(text.getvalue())
        conn.execute("VACUUM ANALYZE")
        counted = conn.execute(
            "SELECT count(*) FROM fleet_metricminute WHERE tenant_id = %s", [seed.tenant_id]
        ).fetchone()
    if counted is None or counted[0] != agents * MINUTES:
        raise AssertionError(f"seeded {counted} minute rows, not {agents * MINUTES}")
    return seed.tenant_id, now


def _rules(tenant_id: int, now: datetime) -> list[tuple[str, int]]:
    from alerts.models import AlertRule

    AlertRule.objects.filter(tenant_id=tenant_id).delete()  # the defaults: these rules are the bench's
    rules, reads = [], set()
    for n in range(RULES):
        metric = "heartbeat_age_s" if n % 10 == 9 else METRICS[n % len(METRICS)]
        window = WINDOWS[(n // len(METRICS)) % len(WINDOWS)]
        aggregation = AGGREGATIONS[(n // 3) % len(AGGREGATIONS)]
        if metric == "heartbeat_age_s":
            threshold = 60.0  # one agent in two hundred is silent for 90 s
        elif aggregation == "sum":
            threshold = HIGH[metric] * window / 60
        else:
            threshold = HIGH[metric]
        selector = "" if n % 2 else f"team=team-{n % TEAMS}"
        rule = AlertRule(
            tenant_id=tenant_id, name=f"rule {n:03d}", metric=metric, aggregation=aggregation, comparator="gt",
            threshold=threshold, window_seconds=window, for_seconds=60 * (n % 2), selector=selector,
            created_at=now, updated_at=now,
        )  # fmt: skip
        rules.append(rule)
        if metric != "heartbeat_age_s":
            reads.add((metric, window))
    AlertRule.objects.bulk_create(rules)
    return sorted(reads)


def _floor(tenant_id: int, reads: list[tuple[str, int]], now: datetime) -> float:
    from alerts.sql import _windows_statement

    wanted: dict[str, list[int]] = {}
    for metric, window in reads:
        wanted.setdefault(metric, []).append(window)
    statement, spans = _windows_statement(wanted)
    params = {"tenant": tenant_id, "end": now, "first": now - timedelta(seconds=spans[-1])}
    params.update({f"start_{n}": now - timedelta(seconds=w) for n, w in enumerate(spans)})
    with common.pg_connect(autocommit=True) as conn:
        started = time.perf_counter()
        if not conn.cursor(binary=True).execute(statement, params).fetchall():
            raise AssertionError("the floor read no rows")
        return time.perf_counter() - started


def run(agents: int = AGENTS) -> list[Row]:
    pinning = common.pin_client()
    common.flush_redis()
    bench_fanout.django_setup()
    bench_fanout.drop_django_connections()
    common.progress(f"seeding {agents:,} agents and {agents * MINUTES:,} minute rows")
    tenant_id, now = _seed(agents)
    bench_fanout.drop_django_connections()  # the database was made again under this process's connection

    from alerts.evaluation import evaluate_tenant
    from alerts.models import Alert

    reads = _rules(tenant_id, now)
    common.progress(f"{RULES} rules reading {len(reads)} (metric, window) pairs; evaluating")
    started = time.perf_counter()
    first = evaluate_tenant(tenant_id, now=now)
    first_s = time.perf_counter() - started
    if not first.transitions:
        raise AssertionError("the first cycle opened no alert: the thresholds miss the data")
    cycles: list[float] = []
    floors: list[float] = []
    for n in range(CYCLES):
        at = now + timedelta(seconds=1 + n)
        floors.append(_floor(tenant_id, reads, at))
        started = time.perf_counter()
        again = evaluate_tenant(tenant_id, now=at)
        cycles.append(time.perf_counter() - started)
        if again.transitions:
            raise AssertionError(f"a steady cycle made {len(again.transitions)} transitions")
    opened = Alert.objects.filter(tenant_id=tenant_id).count()
    bench_fanout.drop_django_connections()
    median, floor = statistics.median(cycles), statistics.median(floors)
    return [
        Row(
            f"alert evaluation: {RULES} rules, one steady cycle (median)",
            "ms",
            median * 1000,
            target=TARGET_S * 1000,
            floor=floor * 1000,
            note=f"{agents:,} agents, every one reporting; {CYCLES} steady cycles, max {max(cycles):.3f} s; floor: the aggregate statement of the "
            f"{len(reads)} (metric, window) pairs over psycopg, median of {len(floors)} ({min(floors):.3f}–"
            f"{max(floors):.3f} s); the first cycle opened {opened:,} alerts ({len(first.transitions):,} "
            f"transitions written) in {first_s:.2f} s; {pinning}",
        ),
    ]
