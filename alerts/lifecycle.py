"""One alert's next state, from the rule, what the alert is now and one observation: no
database, no clock (``now`` is given), so every rule of the lifecycle is tested with
controlled time (docs/alerts.md, "Lifecycle").

- No open alert and the condition holds: pending from now; firing at once when "for" is 0.
- Pending: firing once the condition has held for "for" (counted from when it began,
  so a missed evaluation loses nothing); cleared (inactive) when it stops holding.
- Firing: resolved only once the value is past the resolve threshold (hysteresis), so a
  value wavering at the threshold does not flap.
- Too few samples in the window is no data: treated as OK, the last state kept, or a
  no-data alert raised, which also waits "for".
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.models import AlertState, Comparator, NoData

COMPARE: dict[str, Callable[[float, float], bool]] = {
    Comparator.GT: operator.gt,
    Comparator.GTE: operator.ge,
    Comparator.LT: operator.lt,
    Comparator.LTE: operator.le,
}


@dataclass(frozen=True)
class Condition:
    """What a rule asks, as the lifecycle needs it."""

    comparator: str
    threshold: float
    clear_threshold: float
    for_: timedelta
    min_samples: int
    no_data: str


@dataclass(frozen=True)
class Observed:
    value: float | None  # None: nothing reported in the window
    samples: int


@dataclass(frozen=True)
class Open:
    """An open alert as it stands."""

    state: str  # pending or firing
    started_at: datetime
    no_data: bool


@dataclass(frozen=True)
class Step:
    """What to do: ``to`` is the new state (None: nothing changes; "" for a pending alert
    cleared is ``inactive``). ``start`` opens a new alert (pending, or firing at once)."""

    to: str | None
    no_data: bool = False
    start: bool = False


NOTHING = Step(None)


def holds(comparator: str, value: float, threshold: float) -> bool:
    return COMPARE[comparator](value, threshold)


def step(rule: Condition, current: Open | None, seen: Observed, now: datetime) -> Step:
    value = seen.value
    if value is None or not math.isfinite(value) or seen.samples < max(1, rule.min_samples):
        if rule.no_data == NoData.KEEP:
            return NOTHING
        if rule.no_data == NoData.OK:
            return _clear(current)
        return _breach(rule, current, now, no_data=True)
    if current is not None and current.state == AlertState.FIRING and not current.no_data:
        # Hysteresis: a firing alert holds until the value is past the resolve threshold.
        return NOTHING if holds(rule.comparator, value, rule.clear_threshold) else Step(AlertState.RESOLVED)
    if holds(rule.comparator, value, rule.threshold):
        if current is not None and current.no_data:
            return _clear(current)  # data again: the no-data alert ends; a breach starts its own
        return _breach(rule, current, now, no_data=False)
    return _clear(current)


def _breach(rule: Condition, current: Open | None, now: datetime, *, no_data: bool) -> Step:
    if current is None:
        return Step(AlertState.FIRING if rule.for_ <= timedelta(0) else AlertState.PENDING, no_data, start=True)
    if current.no_data != no_data:
        return _clear(current)
    if current.state == AlertState.PENDING and now - current.started_at >= rule.for_:
        return Step(AlertState.FIRING, no_data)
    return NOTHING


def _clear(current: Open | None) -> Step:
    if current is None:
        return NOTHING
    return Step(AlertState.RESOLVED if current.state == AlertState.FIRING else AlertState.INACTIVE, current.no_data)
