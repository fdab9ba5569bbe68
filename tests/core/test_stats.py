from __future__ import annotations

import pytest

from core.stats import percentile


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
