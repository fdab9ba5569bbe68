"""The alert evaluation's reads (docs/alerts.md, "Evaluation"): one aggregate statement
per tenant gives every agent's figures for every (metric, window) its rules use, every
aggregation at once; one more says which agents each rule's scope holds.

A metric's value per minute row, its average over the window and its maximum:

- CPU and memory: the minute's mean; the window's mean over every sample; the highest
  sample (``cpu_max``);
- error rate: failed ÷ requests, capped at 100 % (``core.stats.error_rate``), in %; over
  the window from the window's counts; a minute without requests has none;
- latency: the minute's p95; their mean and highest;
- tokens per minute: the minute's tokens; their mean over the minutes reported.

The p95 is the nearest rank of the minutes' values (``percentile_disc``), the sum their sum.

The figures come back as columns (``Windows``), one value per agent in one order, and in
PostgreSQL's binary format: a rule then finds the agents past its threshold in one pass
over a column, without a Python object per agent and figure.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import compress
from typing import Any, NamedTuple
from uuid import UUID

from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, Q

from alerts.models import Aggregation, Alert, Metric
from core.sql import fetch_binary, plain, table
from core.stats import SQL_PERCENTILE, error_rate, percentile
from fleet.labels import parse_selector, selector_q, with_selector
from fleet.models import Agent, DesiredState, MetricMinute

WINDOWED = (Metric.CPU, Metric.MEMORY, Metric.ERROR_RATE, Metric.LATENCY, Metric.TOKENS)
AGGREGATIONS = frozenset(Aggregation.values)


class Aggregates(NamedTuple):
    samples: int
    avg: float | None
    max: float | None
    p95: float | None
    sum: float | None


# metric → (per minute, window's average, window's maximum), over the minute table's columns;
# ``{f}`` follows each aggregate: empty for one window, a FILTER clause for one of several.
_EXPRESSIONS = {
    Metric.CPU: ("cpu_sum / NULLIF(samples, 0)", "SUM(cpu_sum){f} / NULLIF(SUM(samples){f}, 0)", "MAX(cpu_max){f}"),
    Metric.MEMORY: (
        "memory_sum / NULLIF(samples, 0)", "SUM(memory_sum){f} / NULLIF(SUM(samples){f}, 0)", "MAX(memory_max){f}",
    ),
    Metric.ERROR_RATE: (
        "LEAST(errors, requests) * 100.0 / NULLIF(requests, 0)",
        "LEAST(SUM(errors){f}, SUM(requests){f}) * 100.0 / NULLIF(SUM(requests){f}, 0)",
        "MAX(LEAST(errors, requests) * 100.0 / NULLIF(requests, 0)){f}",
    ),
    Metric.LATENCY: ("latency_p95_ms", "AVG(latency_p95_ms){f}", "MAX(latency_p95_ms){f}"),
    Metric.TOKENS: ("tokens::float", "AVG(tokens::float){f}", "(MAX(tokens){f})::float"),
}  # fmt: skip


# Fewer than 20 values: the nearest-rank p95 (rank ceil(0.95 n)) is the largest of them, so
# a window of at most 19 minutes needs no sort for it (docs/alerts.md, "Rules").
P95_IS_MAX_UP_TO = 19


def p95_is_max(window_seconds: float) -> bool:
    """A window of (end - seconds, end] holds at most ceil(seconds / 60) minute rows."""
    return math.ceil(window_seconds / 60) <= P95_IS_MAX_UP_TO


def _figures(metric: str, window_seconds: float, f: str = "") -> tuple[str, ...]:
    """A window's average, maximum, p95 and sum, as select expressions."""
    per, avg, high = _EXPRESSIONS[Metric(metric)]
    p95 = f"MAX({per}){f}" if p95_is_max(window_seconds) else f"{SQL_PERCENTILE}(0.95) WITHIN GROUP (ORDER BY {per}){f}"
    # As double precision: the rows arrive as floats, with nothing to convert per value.
    figures = (avg.format(f=f), high.format(f=f), p95, f"SUM({per}){f}")
    return tuple(f"({e})::float8" for e in figures)


def _windows_statement(wanted: Mapping[str, Sequence[int]]) -> tuple[str, tuple[int, ...]]:
    """Every (metric, window) of ``wanted`` ending together, in one pass over the longest
    window's minute rows; and the windows, in the order of their ``%(start_<n>)s``.

    The columns: the agent; each window's samples (0 without a minute in it); then for each
    metric of ``wanted`` and each of its windows (shortest first), the avg, max, p95 and
    sum, NaN without a figure. A window is a FILTER on its own start, except the longest,
    which is every row read."""
    spans = tuple(sorted({w for windows in wanted.values() for w in windows}))

    def where(n: int) -> str:
        return "" if n == len(spans) - 1 else f" FILTER (WHERE minute > %(start_{n})s)"

    columns = [f"COALESCE(SUM(samples){where(n)}, 0)::bigint" for n in range(len(spans))]
    for metric, windows in wanted.items():
        for window in sorted(set(windows)):
            columns += [f"COALESCE({e}, 'NaN')" for e in _figures(metric, window, where(spans.index(window)))]
    statement = (
        f"SELECT agent_id, {', '.join(columns)} FROM {table(MetricMinute)} "  # noqa: S608 - constants only
        "WHERE tenant_id = %(tenant)s AND minute > %(first)s AND minute <= %(end)s GROUP BY agent_id"
    )
    return statement, spans


def per_minute(metric: str, row: dict[str, Any]) -> float | None:
    samples = row["samples"]
    if metric == Metric.CPU:
        return row["cpu_sum"] / samples if samples else None
    if metric == Metric.MEMORY:
        return row["memory_sum"] / samples if samples else None
    if metric == Metric.ERROR_RATE:
        rate = error_rate(row["errors"], row["requests"])
        return None if rate is None else rate * 100
    if metric == Metric.LATENCY:
        return float(row["latency_p95_ms"])
    return float(row["tokens"])


def _aggregate(metric: str, rows: list[dict[str, Any]]) -> dict[UUID, Aggregates]:
    """Each agent's aggregates of ``rows`` (minute rows as dicts), as the statement computes them."""
    by_agent: dict[UUID, list[dict[str, Any]]] = {}
    for row in rows:
        by_agent.setdefault(row["agent_id"], []).append(row)
    out: dict[UUID, Aggregates] = {}
    for agent_id, minutes in by_agent.items():
        values = [v for v in (per_minute(metric, m) for m in minutes) if v is not None]
        samples = sum(m["samples"] for m in minutes)
        if metric in (Metric.CPU, Metric.MEMORY):
            field = "cpu" if metric == Metric.CPU else "memory"
            avg = sum(m[f"{field}_sum"] for m in minutes) / samples if samples else None
            high = max(m[f"{field}_max"] for m in minutes)
        elif metric == Metric.ERROR_RATE:
            rate = error_rate(sum(m["errors"] for m in minutes), sum(m["requests"] for m in minutes))
            avg = None if rate is None else rate * 100
            high = max(values) if values else None
        else:
            avg = sum(values) / len(values) if values else None
            high = max(values) if values else None
        p95 = percentile(values, 0.95) if values else None
        out[agent_id] = Aggregates(
            samples, avg, None if high is None else float(high), p95, sum(values) if values else None
        )
    return out


def _minute_rows(tenant_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [
        dict(r) for r in MetricMinute.objects.filter(tenant_id=tenant_id, minute__gt=start, minute__lte=end).values()
    ]


# --- the open alerts' latest values -----------------------------------------------------------

UPDATE_VALUES_SQL = (
    f"UPDATE {table(Alert)} AS a SET value = v.value, evaluated_at = %s "  # noqa: S608 - constants only
    "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::double precision[]) AS value) AS v WHERE a.id = v.id"
)


def _update_values_portable(values: dict[int, float | None], at: datetime) -> int:
    alerts = [Alert(pk=pk, value=value, evaluated_at=at) for pk, value in values.items()]
    return Alert.objects.bulk_update(alerts, ["value", "evaluated_at"], batch_size=500)


@plain(portable=_update_values_portable)
def update_values(values: dict[int, float | None], at: datetime) -> int:
    """Write the open alerts' latest values (by alert id) in one statement; the rows changed."""
    if not values:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(UPDATE_VALUES_SQL, [at, list(values), list(values.values())])
        return int(cursor.rowcount)


class Window(NamedTuple):
    """One (metric, window) of every agent read, as columns in ``Windows.agents``' order."""

    samples: Sequence[int]  # 0: no minute in the window
    avg: Sequence[float]  # NaN: no figure
    max: Sequence[float]
    p95: Sequence[float]
    sum: Sequence[float]

    def column(self, aggregation: str) -> Sequence[float]:
        """The figures of one aggregation (``Aggregation``'s values are these fields' names)."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}")
        values: Sequence[float] = getattr(self, aggregation)
        return values


@dataclass(frozen=True)
class Windows:
    """Every agent with a minute in the longest window read, and each (metric, window)'s
    figures of them as columns in that order."""

    agents: Sequence[UUID]
    figures: Mapping[tuple[str, int], Window]

    def aggregates(self, metric: str, window: int) -> dict[UUID, Aggregates]:
        """One (metric, window) by agent, as ``Aggregates`` (None for NaN), for the agents with
        samples in it."""
        found = self.figures[(metric, window)]
        out: dict[UUID, Aggregates] = {}
        for n, agent_id in enumerate(self.agents):
            if found.samples[n]:
                values = (None if math.isnan(v[n]) else v[n] for v in (found.avg, found.max, found.p95, found.sum))
                out[agent_id] = Aggregates(found.samples[n], *values)
        return out


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _windows_portable(tenant_id: int, wanted: Mapping[str, Sequence[int]], end: datetime) -> Windows:
    spans = sorted({w for windows in wanted.values() for w in windows})
    rows = _minute_rows(tenant_id, end - timedelta(seconds=spans[-1]), end)  # one read, the longest window
    agents = sorted({r["agent_id"] for r in rows})
    figures: dict[tuple[str, int], Window] = {}
    for metric, windows in wanted.items():
        for window in sorted(set(windows)):
            start = end - timedelta(seconds=window)
            found = _aggregate(metric, [r for r in rows if r["minute"] > start])
            empty = Aggregates(0, None, None, None, None)
            each = [found.get(a, empty) for a in agents]
            figures[(metric, window)] = Window(
                [a.samples for a in each], *([_nan(getattr(a, f)) for a in each] for f in ("avg", "max", "p95", "sum"))
            )
    return Windows(agents, figures)


@plain(portable=_windows_portable)
def windows(tenant_id: int, wanted: Mapping[str, Sequence[int]], end: datetime) -> Windows:
    """For each metric of ``wanted``, each of its windows (in seconds) ending at ``end``:
    every agent's figures, all read in one statement."""
    statement, spans = _windows_statement(wanted)
    params: dict[str, Any] = {"tenant": tenant_id, "end": end, "first": end - timedelta(seconds=spans[-1])}
    params.update({f"start_{n}": end - timedelta(seconds=w) for n, w in enumerate(spans)})
    rows = fetch_binary(statement, params)
    if not rows:
        return Windows((), {(m, w): Window((), (), (), (), ()) for m, ws in wanted.items() for w in ws})
    columns = list(zip(*rows, strict=True))
    samples = dict(zip(spans, columns[1 : 1 + len(spans)], strict=True))
    figures: dict[tuple[str, int], Window] = {}
    at = 1 + len(spans)
    for metric, windows in wanted.items():
        for window in sorted(set(windows)):
            figures[(metric, window)] = Window(samples[window], *columns[at : at + 4])
            at += 4
    return Windows(columns[0], figures)


# --- the agents: whom each rule watches, and how long each has been silent --------------------


class Scopes(NamedTuple):
    """By selector ("" for all), the agents it holds that are meant to run, and those told to stop."""

    running: dict[str, set[UUID]]
    stopped: dict[str, set[UUID]]


def _scopes_portable(tenant_id: int, selectors: Sequence[str]) -> Scopes:
    running: dict[str, set[UUID]] = {}
    stopped: dict[str, set[UUID]] = {}
    for selector in {"", *selectors}:
        chosen = with_selector(Agent.objects.filter(tenant_id=tenant_id), parse_selector(selector), containment=False)
        states = dict(chosen.values_list("pk", "desired_state"))
        running[selector] = {a for a, s in states.items() if s == DesiredState.RUNNING}
        stopped[selector] = {a for a, s in states.items() if s == DesiredState.STOPPED}
    return Scopes(running, stopped)


@plain(portable=_scopes_portable)
def scopes(tenant_id: int, selectors: Sequence[str]) -> Scopes:
    """Every agent of the tenant read once, with a column per selector saying whether it
    matches (``fleet.labels.selector_q``), instead of a query per selector."""
    chosen = sorted(set(selectors) - {""})
    marks = {
        f"selector_{n}": ExpressionWrapper(selector_q(parse_selector(s)) or Q(pk__isnull=False), BooleanField())
        for n, s in enumerate(chosen)
    }
    agents = Agent.objects.filter(tenant_id=tenant_id).order_by()
    query = agents.annotate(**marks).values_list("pk", "desired_state", *marks)
    statement, params = query.query.sql_with_params()
    rows = fetch_binary(statement, params)
    if not rows:
        return Scopes({s: set() for s in ["", *chosen]}, {s: set() for s in ["", *chosen]})
    ids, states, *matched = zip(*rows, strict=True)
    runs = [s == DesiredState.RUNNING for s in states]
    stops = [s == DesiredState.STOPPED for s in states]
    running, stopped = {"": set(compress(ids, runs))}, {"": set(compress(ids, stops))}
    for selector, column in zip(chosen, matched, strict=True):
        running[selector] = set(compress(ids, map(operator.and_, runs, column)))
        stopped[selector] = set(compress(ids, map(operator.and_, stops, column)))
    return Scopes(running, stopped)


HEARTBEAT_AGES_SQL = (
    "SELECT id, EXTRACT(EPOCH FROM %s - last_heartbeat_at)::float8 "  # noqa: S608 - constants only
    f"FROM {table(Agent)} WHERE tenant_id = %s AND last_heartbeat_at IS NOT NULL"
)


def _heartbeat_ages_portable(tenant_id: int, now: datetime) -> dict[UUID, float]:
    seen = Agent.objects.filter(tenant_id=tenant_id, last_heartbeat_at__isnull=False)
    return {pk: (now - at).total_seconds() for pk, at in seen.values_list("pk", "last_heartbeat_at") if at}


@plain(portable=_heartbeat_ages_portable)
def heartbeat_ages(tenant_id: int, now: datetime) -> dict[UUID, float]:
    """Seconds since each agent's last heartbeat (agents never heard from are not in it)."""
    return dict(fetch_binary(HEARTBEAT_AGES_SQL, [now, tenant_id]))
