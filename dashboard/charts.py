"""Charts for the pages: a time series (``fleet.series``) as the JSON that
static/js/charts.js draws with uPlot, five charts per fleet or agent."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fleet import series
from fleet.series import Point, Range, Series


@dataclass
class Chart:
    title: str
    unit: str
    x: list[int]
    series: list[dict[str, Any]]
    empty: str = "No samples in this range yet."
    name: str = ""
    step: int = 0  # seconds between two points: the live tail of this step extends the chart
    span: int = 0  # seconds the chart shows

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "unit": self.unit, "x": self.x, "series": self.series, "empty": self.empty,
            "name": self.name, "step": self.step, "span": self.span,
        }  # fmt: skip


def _round(value: float | None, places: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, places)


def charts_of(data: Series, *, spread: str = "p95") -> dict[str, Chart]:
    """The five charts of a series. ``spread`` names the second CPU and memory line: the
    p95 across a fleet's agents, or one agent's peak."""
    slots = data.slots
    x = [int((data.start + i * data.step).timestamp()) for i in range(len(slots))]

    def line(fn: Callable[[Point], float | None]) -> list[float | None]:
        return [None if p is None else _round(fn(p)) for p in slots]

    def mean(total: Callable[[Point], float]) -> Callable[[Point], float | None]:
        return lambda p: total(p) / p.samples if p.samples else None

    charts = {
        "cpu": Chart(
            "CPU", "%", x,
            [{"label": "mean", "values": line(mean(lambda p: p.cpu_sum))},
             {"label": spread, "values": line(lambda p: p.cpu_p95)}],
        ),
        "memory": Chart(
            "Memory", "MB", x,
            [{"label": "mean", "values": line(mean(lambda p: p.memory_sum))},
             {"label": spread, "values": line(lambda p: p.memory_p95)}],
        ),
        "tokens": Chart("Tokens", "/min", x, [{"label": "tokens", "values": line(lambda p: p.tokens / p.minutes)}]),
        "requests": Chart(
            "Requests", "/min", x,
            [{"label": "requests", "values": line(lambda p: p.requests / p.minutes)},
             {"label": "errors", "values": line(lambda p: p.errors / p.minutes)}],
        ),
        "latency": Chart("Latency p95", "ms", x, [{"label": "worst p95", "values": line(lambda p: p.latency)}]),
    }  # fmt: skip
    step = int(data.step.total_seconds())
    for name, chart in charts.items():
        chart.name, chart.step, chart.span = name, step, step * len(slots)
    return charts


def fleet_charts(tenant_id: int, rng: Range, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """The tenant's fleet charts for a range; MetricsUnavailable when the store fails."""
    return {name: chart.as_json() for name, chart in charts_of(series.fleet_series(tenant_id, rng, now)).items()}


@dataclass(frozen=True)
class DrawnTo:
    """Where drawn charts end: the start of their last step, and the step in words."""

    at: datetime
    step: str


def drawn_to(drawn: dict[str, dict[str, Any]]) -> DrawnTo | None:
    first = next(iter(drawn.values()), None)
    if not first or not first["x"]:
        return None
    minutes = first["step"] // 60
    step = {1: "minute", 60: "hour"}.get(minutes, f"{minutes} minutes")
    return DrawnTo(datetime.fromtimestamp(first["x"][-1], tz=UTC), step)


def fleet_tail(tenant_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The newest end of the fleet charts at every step, for the live overview:
    ``{step seconds: {"x": [whole step, step in progress], "partial": bool, "elapsed": share
    of the step passed, "charts": {name: [[whole, so far] per line]}}}``. The step in
    progress carries its rates over the time passed (``fleet.series.fleet_tail``), and the
    page draws it dashed. MetricsUnavailable when the store fails."""
    out: dict[str, Any] = {}
    for step, tail in series.fleet_tail(tenant_id, now).items():
        drawn = charts_of(tail.series)
        first = next(iter(drawn.values()))
        out[str(step)] = {
            "x": first.x,
            "partial": tail.partial is not None,
            "elapsed": round(tail.elapsed, 3),
            "charts": {name: [line["values"] for line in chart.series] for name, chart in drawn.items()},
        }
    return out


def agent_charts(agent_id: UUID, rng: Range, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """One agent's charts for a range; MetricsUnavailable when the store fails."""
    data = series.agent_series(agent_id, rng, now)
    return {name: chart.as_json() for name, chart in charts_of(data, spread="peak").items()}
