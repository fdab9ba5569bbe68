"""Burn rates and countdowns (docs/costs.md, "Countdowns"): how fast a quota or a budget is
being used, from the last ``WINDOW`` of usage, and when it runs out at that rate.

The rate is what the last hour used, per hour: a steady rate reads true, a burst lasts an
hour in it. A countdown is said, never computed into infinity: "nothing is being spent
now" when the rate is zero, and "lasts until …" when the quota resets (or the month ends)
before it would run out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

WINDOW = timedelta(hours=1)


def per_hour(amount: Decimal | int, window: timedelta = WINDOW) -> Decimal:
    """An amount used over ``window``, per hour."""
    return Decimal(amount) * Decimal(3600) / Decimal(window.total_seconds())


def runs_out_in(left: Decimal | int, rate: Decimal) -> timedelta | None:
    """At ``rate`` per hour, how long ``left`` lasts: zero when nothing is left, None when
    nothing is being used."""
    if left <= 0:
        return timedelta(0)
    if rate <= 0:
        return None
    return timedelta(hours=float(Decimal(left) / rate))


def duration(span: timedelta) -> str:
    """ "2 h 14 min", "3 d 4 h", "1 min" (at least)."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{max(minutes, 1)} min"


def countdown(left: Decimal | int, rate: Decimal, now: datetime, resets: datetime, *, idle: str, lasts: str) -> str:
    """What a page says: "used up", ``idle`` (nothing is being used), ``lasts`` (it lasts
    past ``resets`` at this rate), or "runs out in ~2 h 14 min at the current rate"."""
    span = runs_out_in(left, rate)
    if span == timedelta(0):
        return "used up"
    if span is None:
        return idle
    if now + span >= resets:
        return lasts
    return f"runs out in ~{duration(span)} at the current rate"
