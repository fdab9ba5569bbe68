"""Plain statements of the fleet domain, each with its portable twin (core/sql.py says how,
docs/architecture.md why).

- ``heartbeat``: every agent heartbeats every ``L10_AGENT_HEARTBEAT_INTERVAL``; one
  statement updates the agent and merges its sample into the minute row.
- ``upsert_minutes``: batches of samples folded into per-minute rows.
- ``claim_samples``: a batch's sample ids claimed in the tenant's ledger, so a retried
  batch is merged once.
- ``update_agent``: control writes an agent's columns on every operation.
- ``fleet_resources`` and ``fleet_minutes``: the overview's figures and the fleet's 1 h
  chart, aggregated in the database instead of read row by row.
- ``fleet_tiles``: the overview's counts by state and its resource figures in one pass.
- ``agent_by_id``: an agent's page and every control request read the agent with its
  tenant and who last changed it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Greatest

from core.errors import ErrorCode, InterfaceError
from core.sql import column, execute, fetch_all, fetch_all_prepared, fetch_one, load, plain, prep, table
from core.stats import SQL_PERCENTILE, percentile
from core.timeutil import floor_minute
from fleet import states
from fleet.models import MAX_FIELDS, SUM_FIELDS, Agent, MetricMinute, MetricSampleId, ObservedState
from tenancy.models import Tenant
from tenancy.sql import TENANT_ALL_FIELDS


class Reading(Protocol):
    """One metrics report of an agent: gauges now, counters since its previous report
    (the ingest API's shapes are readings)."""

    @property
    def cpu_percent(self) -> float | None: ...
    @property
    def memory_mb(self) -> float | None: ...
    @property
    def tokens(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def latency_p95_ms(self) -> float | None: ...


def unknown_agent(external_id: str) -> InterfaceError:
    return InterfaceError(
        ErrorCode.INGEST_UNKNOWN_AGENT, f"No agent {external_id!r} in this tenant; register it first."
    )


# --- minute rows ------------------------------------------------------------------------

# A minute row's values in this order: what the merge statements take.
MINUTE_FIELDS = (
    "agent_id", "tenant_id", "minute", "samples", "cpu_sum", "cpu_max", "memory_sum", "memory_max", "tokens",
    "requests", "errors", "latency_p95_ms",
)  # fmt: skip


class MinuteRow(NamedTuple):
    agent_id: UUID
    tenant_id: int
    minute: datetime
    samples: int
    cpu_sum: float
    cpu_max: float
    memory_sum: float
    memory_max: float
    tokens: int
    requests: int
    errors: int
    latency_p95_ms: float


def minute_row(agent_id: UUID, tenant_id: int, at: datetime, reading: Reading) -> MinuteRow:
    cpu, mem = reading.cpu_percent or 0.0, reading.memory_mb or 0.0
    return MinuteRow(
        agent_id, tenant_id, floor_minute(at), 1, cpu, cpu, mem, mem, reading.tokens, reading.requests,
        reading.errors, reading.latency_p95_ms or 0.0,
    )  # fmt: skip


def _larger(column: str) -> str:
    return f"GREATEST(t.{column}, excluded.{column})"


MERGE_UPDATE = ", ".join(
    [f"{c} = t.{c} + excluded.{c}" for c in SUM_FIELDS] + [f"{c} = {_larger(c)}" for c in MAX_FIELDS]
)
# One short statement whatever the batch size: psycopg prepares it once per connection,
# where a long VALUES list is parsed anew each time.
UPSERT_MINUTES_SQL = (
    f"INSERT INTO {table(MetricMinute)} AS t ({', '.join(MINUTE_FIELDS)}) "  # noqa: S608 - constants only
    "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::timestamptz[], %s::integer[], %s::float8[], "
    "%s::float8[], %s::float8[], %s::float8[], %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[]) "
    f"ON CONFLICT (agent_id, minute) DO UPDATE SET {MERGE_UPDATE}"
)


def _upsert_minutes_portable(rows: Sequence[MinuteRow]) -> None:
    # The caller's transaction holds SQLite's write lock (IMMEDIATE): no other writer can
    # insert the row between the update and the create.
    for row in rows:
        merged = MetricMinute.objects.filter(agent_id=row.agent_id, minute=row.minute).update(
            **{f: F(f) + getattr(row, f) for f in SUM_FIELDS},
            **{f: Greatest(F(f), getattr(row, f)) for f in MAX_FIELDS},
        )
        if not merged:
            MetricMinute.objects.create(**row._asdict())


@plain(portable=_upsert_minutes_portable)
def upsert_minutes(rows: Sequence[MinuteRow]) -> None:
    """Fold rows (at most one per agent and minute) into the minute rows: sums add, maxima
    keep the larger."""
    if rows:
        execute(UPSERT_MINUTES_SQL, [list(column) for column in zip(*rows, strict=True)])


# --- sample ids -------------------------------------------------------------------------

CLAIM_SAMPLES_SQL = (
    f"INSERT INTO {table(MetricSampleId)} (tenant_id, sample_id, seen_at) "  # noqa: S608 - constants only
    "SELECT %s, id, %s FROM unnest(%s::uuid[]) AS id "
    "ON CONFLICT (tenant_id, sample_id) DO NOTHING RETURNING sample_id"
)


def _claim_samples_portable(tenant_id: int, ids: Sequence[UUID], now: datetime) -> set[UUID]:
    # The caller's transaction holds SQLite's write lock (IMMEDIATE): no other writer can
    # claim an id between the read and the insert.
    wanted = set(ids)
    seen = set(
        MetricSampleId.objects.filter(tenant_id=tenant_id, sample_id__in=wanted).values_list("sample_id", flat=True)
    )
    fresh = wanted - seen
    MetricSampleId.objects.bulk_create(
        [MetricSampleId(tenant_id=tenant_id, sample_id=i, seen_at=now) for i in fresh], batch_size=1000
    )
    return fresh


@plain(portable=_claim_samples_portable)
def claim_samples(tenant_id: int, ids: Sequence[UUID], now: datetime) -> set[UUID]:
    """Claim sample ids in the tenant's ledger (``INSERT … ON CONFLICT DO NOTHING``); returns
    those claimed now, i.e. not seen before. Run in the transaction that merges the samples:
    a concurrent batch with the same id waits on the unique index, then finds it taken."""
    if not ids:
        return set()
    return {row[0] for row in fetch_all(CLAIM_SAMPLES_SQL, [tenant_id, now, sorted(set(ids))])}


# --- heartbeats -------------------------------------------------------------------------

# The agent's columns a heartbeat sets besides its observed state: always, and with metrics.
HEARTBEAT_COLUMNS = ("last_heartbeat_at", "updated_at")
HEARTBEAT_METRIC_COLUMNS = (
    "cpu_percent", "memory_mb", "latency_p95_ms", "tokens_per_min", "requests_per_min", "errors_per_min", "metrics_at",
)  # fmt: skip
# What a heartbeat's answer needs of the agent.
ANSWER_FIELDS = ("id", "desired_state", "version", "quotas", "pause_mode", "pause_until")


def heartbeat_fields(reading: Reading | None, at: datetime | None, now: datetime) -> dict[str, Any]:
    """Values for ``HEARTBEAT_COLUMNS`` and, with a reading, ``HEARTBEAT_METRIC_COLUMNS``."""
    fields: dict[str, Any] = {"last_heartbeat_at": now, "updated_at": now}
    if reading is not None:
        interval_min = settings.L10.agent_heartbeat_interval / 60
        fields.update(
            cpu_percent=reading.cpu_percent,
            memory_mb=reading.memory_mb,
            latency_p95_ms=reading.latency_p95_ms,
            tokens_per_min=reading.tokens / interval_min,
            requests_per_min=reading.requests / interval_min,
            errors_per_min=reading.errors / interval_min,
            metrics_at=at or now,
        )
    return fields


@transaction.atomic
def _heartbeat_portable(
    tenant: Tenant, external_id: str, state: str, reading: Reading | None, at: datetime | None, now: datetime
) -> tuple[Agent, str]:
    agent = Agent.objects.filter(tenant=tenant, external_id=external_id).first()
    if agent is None:
        raise unknown_agent(external_id)
    previous_state = agent.observed_state
    fields = heartbeat_fields(reading, at, now)
    fields["observed_state"] = state
    if previous_state != state:
        fields["observed_changed_at"] = now
    fields["delivered_version"] = agent.version  # the answer carries the control
    if agent.delivered_version < agent.version:
        fields["delivered_at"] = now
    if reading is not None:
        _upsert_minutes_portable([minute_row(agent.pk, tenant.pk, at or now, reading)])
    Agent.objects.filter(pk=agent.pk).update(**fields)
    for name, value in fields.items():
        setattr(agent, name, value)
    return agent, previous_state


@functools.cache
def _heartbeat_statement(with_metrics: bool) -> str:
    """One statement: update the agent (keeping its previous observed state for the answer)
    and, with metrics, merge the sample into its minute row."""
    agents = table(Agent)
    columns = HEARTBEAT_COLUMNS + (HEARTBEAT_METRIC_COLUMNS if with_metrics else ())
    assignments = ", ".join(f"{c} = %({c})s" for c in columns)
    statement = (
        f"WITH previous AS (SELECT id, observed_state FROM {agents} "  # noqa: S608 - constants only
        "WHERE tenant_id = %(tenant_id)s AND external_id = %(external_id)s), "
        f"agent AS (UPDATE {agents} AS a SET {assignments}, observed_state = %(state)s, "
        "observed_changed_at = CASE WHEN a.observed_state = %(state)s THEN a.observed_changed_at ELSE %(now)s END, "
        # The answer carries the control: delivered, if this version was not yet.
        "delivered_at = CASE WHEN a.delivered_version < a.version THEN %(now)s ELSE a.delivered_at END, "
        "delivered_version = a.version "
        "FROM previous WHERE a.id = previous.id "
        f"RETURNING {', '.join(f'a.{c}' for c in ANSWER_FIELDS)}, previous.observed_state)"
    )
    if with_metrics:
        statement += (
            f", minute AS (INSERT INTO {table(MetricMinute)} AS t ({', '.join(MINUTE_FIELDS)}) "  # noqa: S608
            "SELECT agent.id, %(tenant_id)s, %(minute)s, 1, %(cpu)s, %(cpu)s, %(mem)s, %(mem)s, %(tokens)s, "
            "%(requests)s, %(errors)s, %(p95)s FROM agent "
            f"ON CONFLICT (agent_id, minute) DO UPDATE SET {MERGE_UPDATE})"
        )
    return f"{statement} SELECT {', '.join(ANSWER_FIELDS)}, observed_state FROM agent"  # noqa: S608


@plain(portable=_heartbeat_portable)
def heartbeat(
    tenant: Tenant, external_id: str, state: str, reading: Reading | None, at: datetime | None, now: datetime
) -> tuple[Agent, str]:
    """Record a heartbeat: (the agent as its answer needs it, its previous observed state).
    The agent carries its id, external id, tenant, desired state, version, quotas, pause
    and observed state; the rest of the row is not read."""
    params = heartbeat_fields(reading, at, now)
    params.update(tenant_id=tenant.pk, external_id=external_id, state=state, now=now)
    if reading is not None:
        row = minute_row(UUID(int=0), tenant.pk, at or now, reading)
        params.update(
            minute=row.minute, cpu=row.cpu_sum, mem=row.memory_sum, tokens=row.tokens, requests=row.requests,
            errors=row.errors, p95=row.latency_p95_ms,
        )  # fmt: skip
    found = fetch_one(_heartbeat_statement(reading is not None), params)
    if found is None:
        raise unknown_agent(external_id)
    agent = load(Agent, ANSWER_FIELDS, found[:-1])
    agent.tenant, agent.external_id, agent.observed_state = tenant, external_id, state
    return agent, str(found[-1])


class Beat(NamedTuple):
    """One heartbeat of a batch (``heartbeats``)."""

    tenant: Tenant
    external_id: str
    state: str
    reading: Reading | None
    at: datetime | None


class Heard(NamedTuple):
    """What a heartbeat's answer needs of its agent (``ANSWER_FIELDS``), and the agent's
    observed state before it."""

    id: UUID
    desired_state: str
    version: int
    quotas: dict[str, dict[str, int]]
    pause_mode: str
    pause_until: datetime | None
    previous_state: str


def _heartbeats_portable(beats: Sequence[Beat], now: datetime) -> list[Heard | None]:
    found: list[Heard | None] = []
    for beat in beats:
        try:
            agent, previous = _heartbeat_portable(beat.tenant, beat.external_id, beat.state, beat.reading, beat.at, now)
        except InterfaceError:
            found.append(None)
            continue
        found.append(Heard(agent.pk, agent.desired_state, agent.version, agent.quotas or {}, agent.pause_mode,
                           agent.pause_until, previous))  # fmt: skip
    return found


# The batch's columns, one array each, in this order (``heartbeats``).
BEAT_COLUMNS = (
    ("ord", "integer"), ("tenant_id", "bigint"), ("external_id", "text"), ("state", "text"),
    ("has_metrics", "boolean"), ("cpu", "float8"), ("mem", "float8"), ("p95", "float8"), ("tokens_pm", "float8"),
    ("requests_pm", "float8"), ("errors_pm", "float8"), ("metrics_at", "timestamptz"), ("minute", "timestamptz"),
    ("tokens", "bigint"), ("requests", "bigint"), ("errors", "bigint"),
)  # fmt: skip
# With metrics, these agent columns take the beat's values; without, they keep theirs.
_METRIC_SOURCES = {
    "cpu_percent": "cpu", "memory_mb": "mem", "latency_p95_ms": "p95", "tokens_per_min": "tokens_pm",
    "requests_per_min": "requests_pm", "errors_per_min": "errors_pm", "metrics_at": "metrics_at",
}  # fmt: skip
if set(_METRIC_SOURCES) != set(HEARTBEAT_METRIC_COLUMNS):
    raise AssertionError("every metric column of a heartbeat needs its source in a batch")


@functools.cache
def heartbeats_statement() -> str:
    """One statement for a batch of heartbeats (at most one per agent): lock the agents in
    id order (two batches never wait on each other in a cycle), update each as ``heartbeat``
    does, merge the minute rows of those with metrics, and return each agent's answer with
    its previous observed state, by the beat's position."""
    agents = table(Agent)
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in BEAT_COLUMNS)
    names = ", ".join(name for name, _ in BEAT_COLUMNS)
    metrics = ", ".join(
        f"{c} = CASE WHEN b.has_metrics THEN b.{source} ELSE a.{c} END" for c, source in _METRIC_SOURCES.items()
    )
    return (
        f"WITH beat AS (SELECT * FROM unnest({arrays}) AS b({names})), "  # noqa: S608 - constants only
        f"previous AS (SELECT a.id, a.observed_state, beat.* FROM {agents} AS a "
        "JOIN beat ON a.tenant_id = beat.tenant_id AND a.external_id = beat.external_id "
        "ORDER BY a.id FOR UPDATE OF a), "
        f"agent AS (UPDATE {agents} AS a SET last_heartbeat_at = %s, updated_at = %s, observed_state = b.state, "
        "observed_changed_at = CASE WHEN a.observed_state = b.state THEN a.observed_changed_at ELSE %s END, "
        f"{metrics}, "
        "delivered_at = CASE WHEN a.delivered_version < a.version THEN %s ELSE a.delivered_at END, "
        "delivered_version = a.version "
        "FROM previous AS b WHERE a.id = b.id "
        f"RETURNING b.ord, {', '.join(f'a.{c}' for c in ANSWER_FIELDS)}, b.observed_state), "
        f"minute AS (INSERT INTO {table(MetricMinute)} AS t ({', '.join(MINUTE_FIELDS)}) "
        # A gauge not reported counts as 0 in the minute row, as ``minute_row`` has it.
        "SELECT b.id, b.tenant_id, b.minute, 1, coalesce(b.cpu, 0), coalesce(b.cpu, 0), coalesce(b.mem, 0), "
        "coalesce(b.mem, 0), b.tokens, b.requests, b.errors, coalesce(b.p95, 0) "
        "FROM previous AS b WHERE b.has_metrics ORDER BY b.id "
        f"ON CONFLICT (agent_id, minute) DO UPDATE SET {MERGE_UPDATE}) "
        f"SELECT * FROM agent"
    )


def heartbeats_params(beats: Sequence[Beat], now: datetime) -> list[Any]:
    """The statement's parameters: a column array each, then the time four times."""
    per_min = settings.L10.agent_heartbeat_interval / 60
    rows: list[tuple[Any, ...]] = []
    for i, beat in enumerate(beats):
        r = beat.reading
        if r is None:
            rows.append((i, beat.tenant.pk, beat.external_id, beat.state, False, *(None,) * 8, 0, 0, 0))
            continue
        rows.append(
            (i, beat.tenant.pk, beat.external_id, beat.state, True, r.cpu_percent, r.memory_mb, r.latency_p95_ms,
             r.tokens / per_min, r.requests / per_min, r.errors / per_min, beat.at or now,
             floor_minute(beat.at or now), r.tokens, r.requests, r.errors)
        )  # fmt: skip
    columns = [list(column) for column in zip(*rows, strict=True)]
    return [*columns, now, now, now, now]


@plain(portable=_heartbeats_portable)
def heartbeats(beats: Sequence[Beat], now: datetime) -> list[Heard | None]:
    """Record a batch of heartbeats, at most one per agent, in one statement: for each beat
    in order, what its answer needs of the agent and its previous observed state, or None
    for an agent its tenant does not have. Run it in a transaction."""
    if not beats:
        return []
    found: list[Heard | None] = [None] * len(beats)
    for row in fetch_all_prepared(heartbeats_statement(), heartbeats_params(beats, now)):
        quotas = json.loads(row[4]) if isinstance(row[4], str) else row[4]
        found[row[0]] = Heard(row[1], row[2], row[3], quotas or {}, row[5], row[6], row[7])
    return found


# --- control's writes -------------------------------------------------------------------


def _update_agent_portable(agent: Agent, fields: Sequence[str]) -> None:
    Agent.objects.filter(pk=agent.pk).update(**{f: getattr(agent, f) for f in fields})


@plain(portable=_update_agent_portable)
def update_agent(agent: Agent, fields: Sequence[str]) -> None:
    """Write these fields (attnames) of the agent as they are on ``agent``."""
    assignments = ", ".join(f"{column(Agent, f)} = %s" for f in fields)
    params = prep(Agent, {f: getattr(agent, f) for f in fields}) + prep(Agent, {"id": agent.pk})
    execute(f"UPDATE {table(Agent)} SET {assignments} WHERE id = %s", params)  # noqa: S608 - constants only


# --- the overview's figures ------------------------------------------------------------


class ResourceFigures(NamedTuple):
    """Across the tenant's agents that reported since ``since``."""

    reporting: int
    cpu_mean: float | None
    cpu_p95: float | None
    memory_mean: float | None
    memory_p95: float | None
    tokens_per_min: float
    requests_per_min: float
    failed_per_min: float  # each agent's errors, capped at its requests (core.stats.error_rate)


# The aggregates of ResourceFigures, in its order; ``{live}`` is where a FILTER clause goes.
# Aggregates skip NULLs, as the portable twins do.
RESOURCE_AGGREGATES = (
    "count(*){live}",
    "avg(cpu_percent){live}",
    "{pct}(0.95) WITHIN GROUP (ORDER BY cpu_percent){live}",
    "avg(memory_mb){live}",
    "{pct}(0.95) WITHIN GROUP (ORDER BY memory_mb){live}",
    "coalesce(sum(tokens_per_min){live}, 0)",
    "coalesce(sum(requests_per_min){live}, 0)",
    "coalesce(sum(least(coalesce(errors_per_min, 0), coalesce(requests_per_min, 0))){live}, 0)",
)


def _resource_aggregates(live: str) -> str:
    return ", ".join(a.format(live=live, pct=SQL_PERCENTILE) for a in RESOURCE_AGGREGATES)


# One row, whatever the fleet's size.
FLEET_RESOURCES_SQL = (
    f"SELECT {_resource_aggregates('')} "  # noqa: S608 - constants only
    f"FROM {table(Agent)} WHERE tenant_id = %s AND metrics_at >= %s"
)


def _fleet_resources_portable(tenant_id: int, since: datetime) -> ResourceFigures:
    live = Agent.objects.filter(tenant_id=tenant_id, metrics_at__gte=since).order_by()
    rows = list(live.values_list("cpu_percent", "memory_mb", "tokens_per_min", "requests_per_min", "errors_per_min"))
    cpus = [r[0] for r in rows if r[0] is not None]
    mems = [r[1] for r in rows if r[1] is not None]
    return ResourceFigures(
        reporting=len(rows),
        cpu_mean=sum(cpus) / len(cpus) if cpus else None,
        cpu_p95=percentile(cpus, 0.95) if cpus else None,
        memory_mean=sum(mems) / len(mems) if mems else None,
        memory_p95=percentile(mems, 0.95) if mems else None,
        tokens_per_min=sum(r[2] or 0.0 for r in rows),
        requests_per_min=sum(r[3] or 0.0 for r in rows),
        failed_per_min=sum(min(r[4] or 0.0, r[3] or 0.0) for r in rows),
    )


@plain(portable=_fleet_resources_portable)
def fleet_resources(tenant_id: int, since: datetime) -> ResourceFigures:
    """The fleet's CPU and memory (mean, p95) and rates, from the agents' latest reports."""
    row = fetch_one(FLEET_RESOURCES_SQL, [tenant_id, since])
    if row is None:  # an aggregate without GROUP BY always answers one row
        raise RuntimeError("the fleet resources aggregate returned no row")
    return ResourceFigures(*row)


class TileFigures(NamedTuple):
    """The overview's tiles: every agent of the tenant by observed state, how many have a
    change under way (``fleet.states``), and the resources of those that reported since
    ``since``."""

    total: int
    by_state: dict[str, int]  # observed states with at least one agent
    pending: int
    resources: ResourceFigures


# One pass over the tenant's agents, one row: the counts take every agent, the resource
# figures only the live ones (FILTER), so the tiles cost one scan instead of two.
FLEET_TILES_SQL = (
    "SELECT count(*), "  # noqa: S608 - constants only
    + "".join(f"count(*) FILTER (WHERE observed_state = %(state_{n})s), " for n in range(len(ObservedState.values)))
    + f"count(*) FILTER (WHERE {states.pending_sql()}), "
    + _resource_aggregates(" FILTER (WHERE metrics_at >= %(since)s)")
    + f" FROM {table(Agent)} WHERE tenant_id = %(tenant_id)s"
)


def _fleet_tiles_portable(tenant_id: int, since: datetime) -> TileFigures:
    rows = (
        Agent.objects.filter(tenant_id=tenant_id).values_list("observed_state", "desired_state").annotate(n=Count("pk"))
    )
    total = pending = 0
    by_state: dict[str, int] = {}
    for observed, desired, n in rows.order_by():
        total += n
        if observed in ObservedState.values:
            by_state[observed] = by_state.get(observed, 0) + n
        if states.is_pending(desired, observed):
            pending += n
    return TileFigures(total, by_state, pending, _fleet_resources_portable(tenant_id, since))


@plain(portable=_fleet_tiles_portable)
def fleet_tiles(tenant_id: int, since: datetime) -> TileFigures:
    """The overview's counts by state and the fleet's resources (``fleet_resources``) in one read."""
    params: dict[str, Any] = {f"state_{n}": state for n, state in enumerate(ObservedState.values)}
    params.update(tenant_id=tenant_id, since=since)
    row = fetch_one(FLEET_TILES_SQL, params)
    if row is None:  # an aggregate without GROUP BY always answers one row
        raise RuntimeError("the fleet tiles aggregate returned no row")
    states = len(ObservedState.values)
    by_state = {state: n for state, n in zip(ObservedState.values, row[1 : 1 + states], strict=True) if n}
    return TileFigures(row[0], by_state, row[1 + states], ResourceFigures(*row[2 + states :]))


# --- the fleet's chart per minute -------------------------------------------------------


class MinuteFigures(NamedTuple):
    """The fleet in one minute: sums over its agents' minute rows; p95s across the agents'
    averages in that minute."""

    minute: datetime
    agents: int
    samples: int
    cpu_sum: float
    cpu_p95: float
    memory_sum: float
    memory_p95: float
    tokens: int
    requests: int
    errors: int
    latency: float


# The figures of one minute of a fleet: what its chart shows (MinuteFigures after the minute).
_MINUTE_FIGURES = (
    "count(*), sum(samples)::bigint, sum(cpu_sum), "
    f"{SQL_PERCENTILE}(0.95) WITHIN GROUP (ORDER BY cpu_sum / NULLIF(samples, 0)), sum(memory_sum), "
    f"{SQL_PERCENTILE}(0.95) WITHIN GROUP (ORDER BY memory_sum / NULLIF(samples, 0)), "
    "sum(tokens)::bigint, sum(requests)::bigint, sum(errors)::bigint, max(latency_p95_ms)"
)
FLEET_MINUTES_SQL = (
    f"SELECT minute, {_MINUTE_FIGURES} FROM {table(MetricMinute)} "  # noqa: S608 - constants only
    "WHERE tenant_id = %s AND minute >= %s AND minute < %s GROUP BY minute ORDER BY minute"
)
# Every tenant's at once, for the rollups' fold: one statement, not one per tenant.
TENANTS_MINUTES_SQL = (
    f"SELECT tenant_id, minute, {_MINUTE_FIGURES} FROM {table(MetricMinute)} "  # noqa: S608 - constants only
    "WHERE minute >= %s AND minute < %s GROUP BY tenant_id, minute ORDER BY tenant_id, minute"
)

_MINUTE_COLUMNS = ("minute", "samples", "cpu_sum", "memory_sum", "tokens", "requests", "errors", "latency_p95_ms")


def _figures(minute: datetime, group: list[tuple[Any, ...]]) -> MinuteFigures:
    """One minute's figures from its rows (``_MINUTE_COLUMNS``), as ``_MINUTE_FIGURES``."""
    return MinuteFigures(
        minute, len(group), sum(r[1] for r in group), sum(r[2] for r in group),
        percentile([r[2] / r[1] for r in group if r[1]], 0.95), sum(r[3] for r in group),
        percentile([r[3] / r[1] for r in group if r[1]], 0.95), sum(r[4] for r in group),
        sum(r[5] for r in group), sum(r[6] for r in group), max(r[7] for r in group),
    )  # fmt: skip


def _fleet_minutes_portable(tenant_id: int, start: datetime, end: datetime) -> list[MinuteFigures]:
    rows = MetricMinute.objects.filter(Q(tenant_id=tenant_id) & Q(minute__gte=start) & Q(minute__lt=end)).values_list(
        *_MINUTE_COLUMNS
    )
    grouped: dict[datetime, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    return [_figures(minute, grouped[minute]) for minute in sorted(grouped)]


def _tenants_minutes_portable(start: datetime, end: datetime) -> list[tuple[int, MinuteFigures]]:
    rows = MetricMinute.objects.filter(Q(minute__gte=start) & Q(minute__lt=end)).values_list(
        "tenant_id", *_MINUTE_COLUMNS
    )
    grouped: dict[tuple[int, datetime], list[tuple[Any, ...]]] = {}
    for tenant_id, *row in rows:
        grouped.setdefault((tenant_id, row[0]), []).append(tuple(row))
    return [(key[0], _figures(key[1], grouped[key])) for key in sorted(grouped)]


@plain(portable=_tenants_minutes_portable)
def tenants_minutes(start: datetime, end: datetime) -> list[tuple[int, MinuteFigures]]:
    """Every tenant's fleet per minute in [start, end): (tenant id, figures), by tenant and minute."""
    return [(row[0], MinuteFigures(*row[1:])) for row in fetch_all(TENANTS_MINUTES_SQL, [start, end])]


@plain(portable=_fleet_minutes_portable)
def fleet_minutes(tenant_id: int, start: datetime, end: datetime) -> list[MinuteFigures]:
    """The tenant's fleet per minute in [start, end), oldest first."""
    return [MinuteFigures(*row) for row in fetch_all(FLEET_MINUTES_SQL, [tenant_id, start, end])]


# --- one agent ----------------------------------------------------------------------------

AGENT_ALL_FIELDS = tuple(f.attname for f in Agent._meta.concrete_fields)
CHANGED_BY_FIELDS = ("id", "username")
AGENT_SQL = (
    f"SELECT {', '.join(f'a.{c}' for c in AGENT_ALL_FIELDS)}, {', '.join(f't.{c}' for c in TENANT_ALL_FIELDS)}, "  # noqa: S608
    f"{', '.join(f'u.{c}' for c in CHANGED_BY_FIELDS)} FROM {table(Agent)} AS a "
    f"JOIN {table(Tenant)} AS t ON t.id = a.tenant_id "
    f"LEFT JOIN {table(User)} AS u ON u.id = a.{column(Agent, 'desired_changed_by_id')} WHERE a.id = %s"
)


def _agent_by_id_portable(agent_id: UUID) -> Agent | None:
    return Agent.objects.select_related("tenant", "desired_changed_by").filter(pk=agent_id).first()


@plain(portable=_agent_by_id_portable)
def agent_by_id(agent_id: UUID) -> Agent | None:
    """The agent with its tenant and the person who last changed its desired state (their
    id and name), as ``select_related`` would load them."""
    row = fetch_one(AGENT_SQL, [agent_id])
    if row is None:
        return None
    a, t = len(AGENT_ALL_FIELDS), len(AGENT_ALL_FIELDS) + len(TENANT_ALL_FIELDS)
    agent = load(Agent, AGENT_ALL_FIELDS, row[:a])
    agent.tenant = load(Tenant, TENANT_ALL_FIELDS, row[a:t])
    agent.desired_changed_by = None if row[t] is None else load(User, CHANGED_BY_FIELDS, row[t:])
    return agent
