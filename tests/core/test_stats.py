from __future__ import annotations

import pytest

from core.stats import error_rate, percentile


def test_percentile_is_the_nearest_rank_never_an_interpolation():
    assert percentile([], 0.95) == 0.0
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    # 21 values: rank ceil(19.95) = 20; interpolating would give 19.95.
    assert percentile([float(i) for i in range(1, 22)], 0.95) == 20.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0], 0.5) == 1.0
    assert percentile([1.0, 2.0], 1.0) == 2.0


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5])
def test_a_quantile_outside_zero_to_one_is_refused(q):
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], q)


@pytest.mark.parametrize(
    ("errors", "requests", "rate"),
    [
        (1.0, 4.0, 0.25),
        (0.0, 4.0, 0.0),
        (None, 4.0, 0.0),  # no errors reported: none failed
        (7.0, 4.0, 1.0),  # more errors than requests (retries): capped, never 175 %
        (-1.0, 4.0, 0.0),
        (3.0, 0.0, None),  # no requests: no rate, shown as "—"
        (0.0, None, None),
        (3.0, -2.0, None),
    ],
)
def test_the_error_rate_is_failed_requests_per_request_bounded_to_one(errors, requests, rate):
    assert error_rate(errors, requests) == rate
