"""The console's own health and metrics: readiness checks and Prometheus metrics.

Metrics live in prometheus-client's default registry of *this process* (under several
uvicorn workers, each has its own: scrape each process, or run one worker per pod).
Labels never carry tenant data: requests are labelled by their URL *route name*
(``dashboard:agents``), never by the path (``/t/acme/agents/``).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponseBase
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from core import breakers
from core.config import IPNetwork

log = logging.getLogger(__name__)

# --- metrics ---------------------------------------------------------------------------

REQUEST_DURATION = Histogram(
    "l10_http_request_duration_seconds",
    "Time from the request reaching Django to the response leaving it, by URL route name.",
    ["method", "route", "status"],
)
WEBSOCKETS = Gauge("l10_websocket_connections", "Open, authenticated sockets in this process.", ["kind"])
INGEST_RECORDS = Counter("l10_ingest_records", "Records accepted by the ingest API (duplicates not counted).", ["kind"])
HEARTBEAT_FLUSH_SIZE = Histogram(
    "l10_heartbeat_flush_size",
    'Heartbeats written by one statement of a web process (docs/performance.md, "Heartbeat capacity").',
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
CACHE_LOOKUPS = Counter("l10_cache_lookups", "Tenant cache lookups; hit ratio = hit / (hit + miss).", ["result"])

SOCKET_KINDS = ("agent",)
INGEST_KINDS = ("heartbeat", "metrics", "events", "usage")
CACHE_RESULTS = ("hit", "miss")
# Every label value exists from the start, so a family reads 0 rather than being absent.
for _kind in SOCKET_KINDS:
    WEBSOCKETS.labels(kind=_kind)
for _kind in INGEST_KINDS:
    INGEST_RECORDS.labels(kind=_kind)
for _result in CACHE_RESULTS:
    CACHE_LOOKUPS.labels(result=_result)

# Anything else a client sends as a method is one label value, not one per invention.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BREAKER_VALUES = {"closed": 0.0, "half-open": 0.5, "open": 1.0}


def cache_lookup_counts() -> dict[str, int]:
    counts = dict.fromkeys(CACHE_RESULTS, 0)
    for metric in CACHE_LOOKUPS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["result"]] = int(sample.value)
    return counts


class BreakerCollector(Collector):
    """``l10_circuit_breaker_open``, read from the breakers at scrape time."""

    NAME = "l10_circuit_breaker_open"
    HELP = "Circuit breaker state: 1 open, 0.5 half-open, 0 closed."

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["breaker"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["breaker"])
        for name, state in breakers.states().items():
            family.add_metric([name], BREAKER_VALUES.get(state, 1.0))
        return [family]


REGISTRY.register(BreakerCollector())


def exposition(accept: str) -> tuple[bytes, str]:
    """The registry in the format the scraper asked for (Prometheus text or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(REGISTRY), content_type


def scrape_allowed(remote_addr: str | None, allowed: Iterable[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    return any(address in network for network in allowed)


# --- request latency -------------------------------------------------------------------


def _observe(request: HttpRequest, response: HttpResponseBase, started: float) -> None:
    match = getattr(request, "resolver_match", None)
    # The route *name* (or the view's dotted path when unnamed): bounded by the URLconf.
    route = match.view_name if match is not None else "unresolved"
    method = request.method if request.method in KNOWN_METHODS else "other"
    status = f"{response.status_code // 100}xx"
    REQUEST_DURATION.labels(method=method, route=route, status=status).observe(time.perf_counter() - started)


class RequestMetricsMiddleware:
    """Records ``l10_http_request_duration_seconds``; first in MIDDLEWARE, so it times all."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        started = time.perf_counter()
        response: HttpResponseBase = self.get_response(request)
        _observe(request, response, started)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response: HttpResponseBase = await self.get_response(request)
        _observe(request, response, started)
        return response


# --- readiness -------------------------------------------------------------------------

# Checks run in parallel, each in its own thread; the answer never waits longer than
# this for any of them (a dead Postgres can otherwise hold a pool checkout for 10 s).
CHECK_BUDGET = 1.25
HUB_TIMEOUT = 1.0


def _check_database() -> dict[str, Any]:
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            if cursor.fetchone() != (1,):
                raise RuntimeError("SELECT 1 did not answer 1")
    finally:
        # This thread's connection goes back to the pool (or is closed) at once.
        connection.close()
    return {}


def _check_cache() -> dict[str, Any]:
    cache = caches["default"]
    # A key of its own per probe: several processes probing at once cannot confuse each other.
    key, token = f"readyz:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, token, timeout=5)
    if cache.get(key) != token:
        raise RuntimeError("the probe key did not read back")
    cache.delete(key)
    return {}


def _check_hub() -> dict[str, Any]:
    """The hub's transport: Redis pub/sub in production, this process in the embedded default."""
    if not settings.L10.uses_redis:
        return {"backend": "in-process"}  # inside this process: up as long as it answers
    client = redis.Redis.from_url(
        settings.L10.redis_url, socket_connect_timeout=HUB_TIMEOUT, socket_timeout=HUB_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"backend": "redis"}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": _check_database,
    "cache": _check_cache,
    "hub": _check_hub,
}


def _describe(exc: BaseException) -> str:
    # The exception's first line only: enough to act on, no stack or connection string.
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


class _Probe:
    def __init__(self, name: str, check: Callable[[], dict[str, Any]]) -> None:
        self.name = name
        self.check = check
        self.result: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name=f"readyz-{name}", daemon=True)

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            extra = self.check()
        except Exception as exc:
            log.warning("readiness check %s failed: %r", self.name, exc)
            result = {"ok": False, "error": _describe(exc)}
        else:
            result = {"ok": True, **extra}
        self.result = {"ok": result.pop("ok"), "ms": round((time.perf_counter() - started) * 1000, 1), **result}


def readiness() -> tuple[bool, dict[str, Any]]:
    """Run every check at once; (all ok, the /readyz body)."""
    probes = [_Probe(name, check) for name, check in CHECKS.items()]
    for probe in probes:
        probe.thread.start()
    deadline = time.monotonic() + CHECK_BUDGET
    checks: dict[str, dict[str, Any]] = {}
    for probe in probes:
        probe.thread.join(max(0.0, deadline - time.monotonic()))
        result = probe.result
        if result is None:  # still running: it finishes on its own, unobserved
            result = {"ok": False, "ms": CHECK_BUDGET * 1000, "error": f"no answer within {CHECK_BUDGET} s"}
        checks[probe.name] = result
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks, "breakers": breakers.states()}
    return ready, body
