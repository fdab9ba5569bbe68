"""The console's one percentile definition (nearest rank) and its one rate definition.

The q-quantile of n values is the value at rank ceil(q * n) (1-based) of the sorted
values: always one of the values, never interpolated. PostgreSQL's ``percentile_disc``
computes the same, so every plain-SQL aggregate uses it; ``percentile_cont`` (which
interpolates) is never used. Charts, overview figures, rollups and benchmarks all read
their p95 through this definition (docs/architecture.md, "Percentiles").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SQL_PERCENTILE = "percentile_disc"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of ``values``; 0.0 for no values."""
    if not values:
        return 0.0
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def error_rate(errors: float | None, requests: float | None) -> float | None:
    """Failed requests per request over the same window, 0..1; None without requests.

    Both are counts (or per-minute rates) of the same window. Errors are capped at the
    requests: an agent may count more failures than requests (retries of one request, an
    error outside any request), and a rate over 100 % means nothing on screen. The SQL
    forms are ``fleet.models.error_rate`` (per agent) and the fleet's sums in
    ``fleet.selectors.FleetResources``.
    """
    if not requests or requests <= 0:
        return None
    return min(max(errors or 0.0, 0.0), requests) / requests
