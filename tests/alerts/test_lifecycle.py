"""The lifecycle with controlled time: pending → firing only after "for", hysteresis on
resolve, minimum samples and the no-data policies (alerts/lifecycle.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from alerts.lifecycle import Condition, Observed, Open, step
from alerts.models import AlertState, Comparator, NoData

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def rule(**changes) -> Condition:
    base = {
        "comparator": Comparator.GT, "threshold": 80.0, "clear_threshold": 70.0, "for_": timedelta(minutes=5),
        "min_samples": 3, "no_data": NoData.OK,
    }  # fmt: skip
    return Condition(**{**base, **changes})


def run(condition: Condition, values: Sequence[float | None], *, every: timedelta = timedelta(minutes=1)) -> list[str]:
    """Evaluate ``values`` one per ``every``; the state after each (\"\" when none is open)."""
    current: Open | None = None
    states = []
    for n, value in enumerate(values):
        now = T0 + n * every
        decided = step(condition, current, Observed(value, 0 if value is None else 10), now)
        if decided.start:
            current = Open(AlertState.PENDING, now, decided.no_data)
        if decided.to in (AlertState.PENDING, AlertState.FIRING) and current is not None:
            current = Open(decided.to, current.started_at, decided.no_data)
        elif decided.to in (AlertState.RESOLVED, AlertState.INACTIVE):
            current = None
        states.append(current.state if current else "")
    return states


def test_a_breach_fires_only_after_it_has_held_for_the_for_duration():
    states = run(rule(), [90, 90, 90, 90, 90, 90, 90])
    assert states == ["pending"] * 5 + ["firing", "firing"]  # 12:00 + 5 min = 12:05, the sixth evaluation


def test_for_zero_fires_at_once():
    assert step(rule(for_=timedelta(0)), None, Observed(81, 5), T0).to == AlertState.FIRING


def test_a_pending_alert_that_stops_breaching_clears_without_firing():
    assert run(rule(), [90, 90, 60, 90]) == ["pending", "pending", "", "pending"]


def test_a_missed_evaluation_loses_nothing_the_held_time_counts():
    # Evaluated at 12:00, then not until 12:07: the condition held the whole time.
    states = run(rule(), [90, 90], every=timedelta(minutes=7))
    assert states == ["pending", "firing"]


def test_hysteresis_keeps_a_firing_alert_until_the_resolve_threshold_no_flapping():
    values = [90] * 6 + [79, 81, 75, 80.5, 71, 70.5]  # wavering around 80, above 70
    states = run(rule(), values)
    assert states[5:] == ["firing"] * 7
    assert run(rule(), [90] * 6 + [69.9])[-1] == ""  # past the resolve threshold: resolved


def test_resolving_reports_resolved_for_a_firing_alert():
    firing = Open(AlertState.FIRING, T0, False)
    assert step(rule(), firing, Observed(65, 10), T0 + timedelta(minutes=9)).to == AlertState.RESOLVED


def test_below_the_minimum_samples_is_no_data_not_a_breach():
    two = Observed(99, 2)  # two reports, the rule wants three
    assert step(rule(for_=timedelta(0)), None, two, T0).to is None
    assert step(rule(for_=timedelta(0), min_samples=2), None, two, T0).to == AlertState.FIRING


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(NoData.OK, AlertState.RESOLVED), (NoData.KEEP, None), (NoData.ALERT, AlertState.RESOLVED)],
)
def test_no_data_on_a_firing_alert_follows_the_policy(policy, expected):
    firing = Open(AlertState.FIRING, T0, False)
    # ALERT: the breach alert ends, and a no-data alert starts on the next evaluation.
    assert step(rule(no_data=policy), firing, Observed(None, 0), T0 + timedelta(minutes=1)).to == expected


def test_a_no_data_alert_waits_for_the_for_duration_too_and_ends_when_data_returns():
    policy = rule(no_data=NoData.ALERT)
    first = step(policy, None, Observed(None, 0), T0)
    assert first.start and first.to == AlertState.PENDING and first.no_data
    pending = Open(AlertState.PENDING, T0, True)
    assert step(policy, pending, Observed(None, 0), T0 + timedelta(minutes=4)).to is None
    assert step(policy, pending, Observed(None, 0), T0 + timedelta(minutes=5)).to == AlertState.FIRING
    firing = Open(AlertState.FIRING, T0, True)
    assert step(policy, firing, Observed(50, 10), T0 + timedelta(minutes=6)).to == AlertState.RESOLVED


def test_no_data_kept_leaves_a_pending_alert_pending():
    pending = Open(AlertState.PENDING, T0, False)
    assert step(rule(no_data=NoData.KEEP), pending, Observed(None, 0), T0 + timedelta(hours=1)).to is None


@pytest.mark.parametrize(
    ("comparator", "value", "fires"), [("gt", 80, False), ("gte", 80, True), ("lt", 79, True), ("lte", 81, False)]
)
def test_comparators(comparator, value, fires):
    condition = rule(comparator=comparator, for_=timedelta(0), clear_threshold=80.0)
    assert (step(condition, None, Observed(value, 5), T0).to == AlertState.FIRING) is fires


def test_a_non_finite_value_is_no_data():
    assert step(rule(for_=timedelta(0)), None, Observed(float("nan"), 9), T0).to is None


@pytest.mark.parametrize(
    ("comparator", "threshold", "expected"),
    [("gt", 20, ["c", "d"]), ("gte", 20, ["b", "c", "d"]), ("lt", 20, ["a"]), ("lte", 20, ["a", "b"]), ("gt", 99, [])],
)
def test_the_agents_past_a_threshold_are_found_for_each_comparator(comparator, threshold, expected):
    from alerts.evaluation import Figures

    seen = {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0, "e": None, "f": float("nan")}
    ids = {name: uuid.uuid4() for name in seen}
    figures = Figures.of_points({ids[n]: v for n, v in seen.items()})  # a point's values (heartbeat age)
    names = {v: k for k, v in ids.items()}
    assert sorted(names[a] for a in figures.past(comparator, threshold)) == expected
