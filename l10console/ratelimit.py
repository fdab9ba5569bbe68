"""Fixed-window counters in the cache (Redis in production). They fail closed: when the
cache cannot count, the caller is refused rather than let through unmetered."""

from __future__ import annotations

import math
import time

from django.core.cache import cache

from l10console.errors import ErrorCode, InterfaceError


def hit(key: str, *, limit: int, window: int = 1) -> int | None:
    """Count one hit on ``key``; return the seconds to wait when over ``limit``, else None."""
    now = time.time()
    bucket = f"rl:{key}:{int(now // window)}"
    try:
        try:
            count = cache.incr(bucket)
        except ValueError:  # first hit in this window
            count = 1 if cache.add(bucket, 1, timeout=window + 1) else cache.incr(bucket)
    except Exception as exc:
        raise InterfaceError(
            ErrorCode.SERVICE_UNAVAILABLE, "The rate limiter is unavailable; try again shortly.", retry_after=1
        ) from exc
    if count > limit:
        return max(1, math.ceil(window - (now % window)))
    return None
