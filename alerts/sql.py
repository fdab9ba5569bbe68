"""The alert evaluation's one aggregate statement: per agent of a tenant, a metric over a
window of minute rows, every aggregation at once (docs/alerts.md, "Evaluation"). One
statement per (tenant, metric, window) serves every rule that uses it.

A metric's value per minute row, its average over the window and its maximum:

- CPU and memory: the minute's mean; the window's mean over every sample; the highest
  sample (``cpu_max``);
- error rate: failed ÷ requests, capped at 100 % (``core.stats.error_rate``), in %; over
  the window from the window's counts; a minute without requests has none;
- latency: the minute's p95; their mean and highest;
- tokens per minute: the minute's tokens; their mean over the minutes reported.

The p95 is the nearest rank of the minutes' values (``percentile_disc``), the sum their sum.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

from django.db import connection

from alerts.models import Aggregation, Alert, Metric
from core.sql import fetch_all, plain, table
from core.stats import SQL_PERCENTILE, error_rate, percentile
from fleet.models import MetricMinute

WINDOWED = (Metric.CPU, Metric.MEMORY, Metric.ERROR_RATE, Metric.LATENCY, Metric.TOKENS)
AGGREGATIONS = frozenset(Aggregation.values)


class Aggregates(NamedTuple):
    samples: int
    avg: float | None
    max: float | None
    p95: float | None
    sum: float | None

    def of(self, aggregation: str) -> float | None:
        """The figure of one aggregation (``Aggregation``'s values are these fields' names)."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}")
        value: float | None = getattr(self, aggregation)
        return value


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


def _figures(metric: str, window_seconds: float, f: str = "") -> str:
    """A window's samples, average, maximum, p95 and sum, as select expressions."""
    per, avg, high = _EXPRESSIONS[Metric(metric)]
    p95 = f"MAX({per}){f}" if p95_is_max(window_seconds) else f"{SQL_PERCENTILE}(0.95) WITHIN GROUP (ORDER BY {per}){f}"
    # As double precision: the rows arrive as floats, with nothing to convert per value.
    figures = (avg.format(f=f), high.format(f=f), p95, f"SUM({per}){f}")
    return f"SUM(samples){f}::bigint, " + ", ".join(f"({e})::float8" for e in figures)


def _statement(metric: str, window_seconds: float) -> str:
    return (
        f"SELECT agent_id, {_figures(metric, window_seconds)} "  # noqa: S608 - constants only
        f"FROM {table(MetricMinute)} WHERE tenant_id = %s AND minute > %s AND minute <= %s GROUP BY agent_id"
    )


def _windows_statement(metric: str, windows: tuple[int, ...]) -> str:
    """Several windows ending together, in one pass over the longest: each window's figures
    under a FILTER on its own start (``%(start_<n>)s``)."""
    columns = ", ".join(_figures(metric, w, f" FILTER (WHERE minute > %(start_{n})s)") for n, w in enumerate(windows))
    return (
        f"SELECT agent_id, {columns} FROM {table(MetricMinute)} "  # noqa: S608 - constants only
        "WHERE tenant_id = %(tenant)s AND minute > %(first)s AND minute <= %(end)s GROUP BY agent_id"
    )


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


def _window_portable(metric: str, tenant_id: int, start: datetime, end: datetime) -> dict[UUID, Aggregates]:
    return _aggregate(metric, _minute_rows(tenant_id, start, end))


@plain(portable=_window_portable)
def window_aggregates(metric: str, tenant_id: int, start: datetime, end: datetime) -> dict[UUID, Aggregates]:
    """Each agent of the tenant with minute rows in (start, end]: the metric's aggregates."""

    make = Aggregates._make
    return {
        row[0]: make(row[1:])
        for row in fetch_all(_statement(metric, (end - start).total_seconds()), [tenant_id, start, end])
    }


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


def _windows_portable(
    metric: str, tenant_id: int, windows: tuple[int, ...], end: datetime
) -> dict[int, dict[UUID, Aggregates]]:
    ordered = sorted(set(windows))
    rows = _minute_rows(tenant_id, end - timedelta(seconds=ordered[-1]), end)  # one read, the longest window
    return {w: _aggregate(metric, [r for r in rows if r["minute"] > end - timedelta(seconds=w)]) for w in ordered}


@plain(portable=_windows_portable)
def windows_aggregates(
    metric: str, tenant_id: int, windows: tuple[int, ...], end: datetime
) -> dict[int, dict[UUID, Aggregates]]:
    """``window_aggregates`` for several windows (in seconds) ending at ``end``, read in one
    statement; by window. An agent with no minute in a window is not in that window's."""
    ordered = tuple(sorted(set(windows)))
    params: dict[str, Any] = {"tenant": tenant_id, "end": end, "first": end - timedelta(seconds=ordered[-1])}
    params.update({f"start_{n}": end - timedelta(seconds=w) for n, w in enumerate(ordered)})
    out: dict[int, dict[UUID, Aggregates]] = {w: {} for w in ordered}

    make = Aggregates._make
    for row in fetch_all(_windows_statement(metric, ordered), params):
        for n, window in enumerate(ordered):
            if row[1 + 5 * n]:  # samples in this window
                out[window][row[0]] = make(row[1 + 5 * n : 6 + 5 * n])
    return out
