"""A page's cached parts: the tenant's cache generation read once per page, and whether
any part came from the database because the cache was down (the page then shows a
banner). Entries are the tenant's (``core.tenant_cache``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings

from core import tenant_cache

T = TypeVar("T")


class Page:
    def __init__(self) -> None:
        self.degraded = False
        self.generations: dict[int, int] = {}

    def prime(self, tenant_id: int) -> int | None:
        """Read the tenant's generation now. Call it before reading anything a cached entry
        is built from: a change written after this read bumps past it, so its entry is
        never stored under the new generation with the old data."""
        gen = self.generations.get(tenant_id)
        if gen is None:
            try:
                gen = self.generations[tenant_id] = tenant_cache.generation(tenant_id)
            except tenant_cache.CacheUnavailable:
                gen = None  # get_or_compute finds the cache down too and computes
        return gen

    def cached(self, kind: str, tenant_id: int, parts: tuple[object, ...], ttl: int, compute: Callable[[], T]) -> T:
        gen = self.prime(tenant_id)
        result = tenant_cache.get_or_compute(kind, tenant_id, parts, ttl, compute, gen=gen)
        self.degraded |= result.degraded
        value: T = result.value
        return value

    def peek_metrics(self, kind: str, tenant_id: int, parts: tuple[object, ...]) -> Any | None:
        """The cached entry ``metrics`` would return, if it is there; None on a miss or when
        the cache cannot answer (``metrics`` then computes, and says so)."""
        try:
            found = tenant_cache.lookup(kind, tenant_id, parts, gen=tenant_cache.METRICS_GENERATION)
        except tenant_cache.CacheUnavailable:
            return None
        return None if found is tenant_cache.MISSING else found

    def metrics(self, kind: str, tenant_id: int, parts: tuple[object, ...], compute: Callable[[], T]) -> T:
        """An entry drawn from metric rows only (a chart): cached for ``L10_CACHE_TTL_METRICS``
        and not invalidated by state changes (``tenant_cache.METRICS_GENERATION``)."""
        result = tenant_cache.get_or_compute(
            kind, tenant_id, parts, settings.L10.cache_ttl_metrics, compute, gen=tenant_cache.METRICS_GENERATION
        )
        self.degraded |= result.degraded
        value: T = result.value
        return value
