"""Circuit breakers around the console's own dependencies (sync code: pybreaker).

A breaker opens after ``fail_max`` consecutive failures and then refuses calls at once
for ``reset_timeout`` seconds, so a dead Redis or a struggling metrics query costs one
quick failure per request instead of a timeout each. Their states show on ``/readyz``
and ``/metrics``. Control operations never go through a breaker: they must fail closed.
"""

from __future__ import annotations

import logging

import pybreaker

log = logging.getLogger(__name__)


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: object, new_state: object) -> None:
        old = getattr(old_state, "name", old_state)
        new = getattr(new_state, "name", new_state)
        if old != new:
            log.warning("circuit breaker %s: %s -> %s", cb.name, old, new)


def _breaker(
    name: str, *, fail_max: int, reset_timeout: float, exclude: list[type[Exception]] | None = None
) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset_timeout, name=name, listeners=[_LogTransitions()], exclude=exclude
    )


# The cache (Redis in production): pages fall back to the database while it is open.
# ValueError is the cache's "no such key" for incr: an answer, not a failure.
cache = _breaker("cache", fail_max=3, reset_timeout=10, exclude=[ValueError])
# Time-series queries for charts: panels say "metrics unavailable" while it is open.
metrics = _breaker("metrics", fail_max=3, reset_timeout=15)

ALL = {"cache": cache, "metrics": metrics}


def states() -> dict[str, str]:
    return {name: str(b.current_state) for name, b in ALL.items()}


def reset_all() -> None:
    """Close every breaker (tests, and an operator's manual recovery)."""
    for b in ALL.values():
        b.close()
