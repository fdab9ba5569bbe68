"""Fixed-window counters in the cache (Redis in production). They fail closed: when the
cache cannot count, the caller is refused rather than let through unmetered."""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

from core.errors import ErrorCode, InterfaceError


def _redis() -> Any | None:
    """A client of the cache's Redis when the cache is django-redis, else None. Made once
    per address: ``get_redis_connection()`` built a new client on every request here
    (the cache handler is per request context), which showed in the request's profile."""
    config = settings.CACHES["default"]
    if not config["BACKEND"].startswith("django_redis."):
        return None
    return _client(str(config["LOCATION"]))


@functools.cache
def _client(url: str) -> Any:
    # Fail fast, as the cache does: a rate limit fails closed rather than waits.
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, max_connections=200)


def _count(bucket: str, window: int, hits: int = 1) -> int:
    client = _redis()
    if client is not None:
        # One round trip: the window's first hit creates the counter with its TTL, then INCR.
        pipe = client.pipeline(transaction=False)
        pipe.set(bucket, 0, ex=window + 1, nx=True)
        pipe.incrby(bucket, hits)
        _, count = pipe.execute()
        return int(count)
    try:
        return cache.incr(bucket, hits)
    except ValueError:  # first hit in this window
        return hits if cache.add(bucket, hits, timeout=window + 1) else cache.incr(bucket, hits)


def hit(key: str, *, limit: int, window: int = 1) -> int | None:
    """Count one hit on ``key``; return the seconds to wait when over ``limit``, else None."""
    now = time.time()
    bucket = f"l10:rl:{key}:{int(now // window)}"
    try:
        count = _count(bucket, window)
    except Exception as exc:
        raise InterfaceError(
            ErrorCode.SERVICE_UNAVAILABLE, "The rate limiter is unavailable; try again shortly.", retry_after=1
        ) from exc
    if count > limit:
        return max(1, math.ceil(window - (now % window)))
    return None


def admit(key: str, hits: int, *, limit: int, window: int = 1) -> int:
    """Count ``hits`` hits on ``key`` at once; return how many of them are within ``limit``
    (the first ones). As ``hit``, it fails closed: ``InterfaceError`` when the cache
    cannot count."""
    bucket = f"l10:rl:{key}:{int(time.time() // window)}"
    try:
        count = _count(bucket, window, hits)
    except Exception as exc:
        raise InterfaceError(
            ErrorCode.SERVICE_UNAVAILABLE, "The rate limiter is unavailable; try again shortly.", retry_after=1
        ) from exc
    return max(0, min(hits, limit - (count - hits)))


def enforce_per_token(kind: str, token_id: int) -> None:
    """An API token's requests per second, at most ``L10_INGEST_RATE_LIMIT``: E10806 past it."""
    limit = settings.L10.ingest_rate_limit
    wait = hit(f"{kind}:{token_id}", limit=limit)
    if wait is not None:
        raise InterfaceError(
            ErrorCode.INGEST_RATE_LIMITED, f"More than {limit} requests per second for this token.", retry_after=wait
        )
