"""Tenant-scoped cache entries that a state change invalidates at once.

Every key carries the tenant id and the tenant's *generation*; ``invalidate(tenant)``
bumps the generation, so every cached page of that tenant is missed from then on (the
old entries expire on their TTL). A key of tenant A can never be read for tenant B: the
tenant is part of the key, not a parameter of the lookup.

Entries that no state change can alter (charts: they are drawn from metric rows only, never
from desired or observed state) are kept under ``METRICS_GENERATION`` instead, which no
``invalidate`` moves: only their TTL (``L10_CACHE_TTL_METRICS``) ends them, so a burst of
pauses does not make every chart a cache miss.

The cache is behind a circuit breaker: when it fails (Redis down) the caller computes
from the database and the request is marked degraded, so pages render with a banner.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pybreaker
from django.core.cache import cache
from django.db import transaction

from core import breakers, observability

log = logging.getLogger(__name__)
T = TypeVar("T")
GENERATION_TTL = 7 * 86400
# The generation of entries that state changes do not invalidate (generations count from 0).
METRICS_GENERATION = -1


class CacheUnavailable(Exception):
    pass


def _generation_key(tenant_id: int) -> str:
    return f"tgen:{tenant_id}"


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return breakers.cache.call(fn, *args, **kwargs)
    except pybreaker.CircuitBreakerError as exc:
        raise CacheUnavailable(str(exc)) from exc
    except Exception as exc:
        raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc


def generation(tenant_id: int) -> int:
    key = _generation_key(tenant_id)
    value = _call(cache.get, key)
    if value is None:
        _call(cache.add, key, 1, GENERATION_TTL)
        value = _call(cache.get, key) or 1
    return int(value)


def key(kind: str, tenant_id: int, *parts: object, gen: int | None = None) -> str:
    """The entry's key; ``gen`` is the tenant's generation if the caller has read it already."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:20]
    return f"t:{tenant_id}:g{generation(tenant_id) if gen is None else gen}:{kind}:{digest}"


@dataclass
class Cached:
    value: Any
    hit: bool
    degraded: bool  # the cache could not be used; the value came from the database


MISSING = object()


def lookup(kind: str, tenant_id: int, parts: tuple[object, ...], *, gen: int | None = None) -> Any:
    """The cached value, or MISSING; CacheUnavailable when the cache cannot answer."""
    found = _call(cache.get, key(kind, tenant_id, *parts, gen=gen), MISSING)
    _record(hit=found is not MISSING)
    return found


def store(
    kind: str, tenant_id: int, parts: tuple[object, ...], ttl: int, value: Any, *, gen: int | None = None
) -> bool:
    """Cache ``value``; False when the cache could not take it."""
    try:
        _call(cache.set, key(kind, tenant_id, *parts, gen=gen), value, ttl)
    except CacheUnavailable:
        return False
    return True


def get_or_compute(
    kind: str,
    tenant_id: int,
    parts: tuple[object, ...],
    ttl: int,
    compute: Callable[[], T],
    *,
    gen: int | None = None,
) -> Cached:
    """The cached value for (tenant, kind, parts), or ``compute()`` stored for ``ttl`` seconds.

    ``gen``: the tenant's generation as the caller read it once for several entries.
    """
    try:
        if gen is None:
            gen = generation(tenant_id)
        found = lookup(kind, tenant_id, parts, gen=gen)
    except CacheUnavailable as exc:
        log.warning("cache unavailable, computing %s for tenant %s: %s", kind, tenant_id, exc)
        return Cached(compute(), hit=False, degraded=True)
    if found is not MISSING:
        return Cached(found, hit=True, degraded=False)
    value = compute()
    return Cached(value, hit=False, degraded=not store(kind, tenant_id, parts, ttl, value, gen=gen))


def invalidate(tenant_id: int) -> None:
    """Drop every cached entry of the tenant (now, or when the current transaction commits)."""

    def bump() -> None:
        key = _generation_key(tenant_id)
        try:
            try:
                _call(cache.incr, key)
            except CacheUnavailable as exc:
                if not isinstance(exc.__cause__, ValueError):  # missing key: start a generation
                    raise
                _call(cache.set, key, 2, GENERATION_TTL)
        except CacheUnavailable as exc:
            # Entries written before the outage expire on their TTLs; nothing else to do.
            log.warning("could not invalidate the cache of tenant %s: %s", tenant_id, exc)

    transaction.on_commit(bump)


def _record(*, hit: bool) -> None:
    # A Prometheus counter: thread-safe, and /metrics shows it as l10_cache_lookups_total.
    observability.CACHE_LOOKUPS.labels(result="hit" if hit else "miss").inc()


def hit_counts() -> dict[str, int]:
    return observability.cache_lookup_counts()
