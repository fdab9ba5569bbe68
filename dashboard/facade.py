"""The Python API's ``DashboardService`` (docs/python-api.md): the dashboard's reads, async.

    dashboard = DashboardService()            # the console's own stores serve
    await dashboard.initialize()
    overview = await dashboard.get_dashboard_overview(tenant_id="acme")
    agent = await dashboard.get_agent_detail(agent_id="3f0c…")

Every constructor argument is optional. When one is given it is used instead of the
console's own part; each is typed by a small Protocol below. The pages call the same
selectors, so the façade and the console always agree.

- ``state_manager``: where agent states come from (default: the console's database).
- ``metrics_engine``: fleet resources and charts, and the alert evaluation's reads
  (default: the console's metric store; ``AlertService(metrics_engine=...)`` takes the same).
- ``event_bus``: an agent's latest events (default: the console's event store).
- ``redis_client``: a ``redis.asyncio`` client for caching results; keys are scoped by
  tenant and its cache generation, so state changes invalidate them at once. Default:
  the console's cache.
- ``circuit_breaker``: a ``purgatory.AsyncCircuitBreakerFactory`` around the metrics
  reads (default: one of its own). While the metrics breaker is open, overviews come back
  with ``metrics_available=False`` instead of failing.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from purgatory import AsyncCircuitBreakerFactory

from alerts.evaluation import ConsoleMetrics, MetricsSource
from core import tenant_cache
from core.errors import ErrorCode, InterfaceError
from dashboard import charts
from events.models import Event
from fleet import selectors as fleet_selectors
from fleet import series
from fleet.models import Agent
from fleet.selectors import AgentsSummary, FleetResources, TopAgent
from tenancy.models import Tenant
from tenancy.selectors import tenant_by_ref

log = logging.getLogger(__name__)


# --- the ports ------------------------------------------------------------------------


@runtime_checkable
class StateManager(Protocol):
    async def agents_summary(self, tenant_id: int) -> AgentsSummary: ...

    async def get_agent(self, agent_id: UUID) -> Agent | None: ...


@runtime_checkable
class MetricsEngine(MetricsSource, Protocol):
    """The fleet's figures for the pages (async), and for the alert evaluation (sync, the
    ``alerts.evaluation.MetricsSource`` reads): one engine serves ``DashboardService`` and
    ``AlertService`` alike."""

    async def fleet_resources(self, tenant_id: int) -> FleetResources: ...

    async def top_agents(self, tenant_id: int) -> dict[str, list[TopAgent]]: ...

    async def fleet_charts(self, tenant_id: int, range_key: str) -> dict[str, dict[str, Any]]: ...

    async def agent_charts(self, agent_id: UUID, range_key: str) -> dict[str, dict[str, Any]]: ...


@runtime_checkable
class EventBus(Protocol):
    async def latest_events(self, agent_id: UUID, limit: int) -> list[Event]: ...


@runtime_checkable
class AsyncCache(Protocol):
    """The part of ``redis.asyncio.Redis`` the façade uses."""

    async def get(self, name: str) -> Any: ...

    async def set(self, name: str, value: bytes, ex: int | None = None) -> Any: ...


# --- the console's own parts -------------------------------------------------------------


class ConsoleStateManager:
    async def agents_summary(self, tenant_id: int) -> AgentsSummary:
        return await sync_to_async(fleet_selectors.agents_summary)(tenant_id)

    async def get_agent(self, agent_id: UUID) -> Agent | None:
        return await sync_to_async(lambda: Agent.objects.select_related("tenant").filter(pk=agent_id).first())()


class ConsoleMetricsEngine(ConsoleMetrics):
    async def fleet_resources(self, tenant_id: int) -> FleetResources:
        return await sync_to_async(fleet_selectors.fleet_resources)(tenant_id, timezone.now())

    async def top_agents(self, tenant_id: int) -> dict[str, list[TopAgent]]:
        return await sync_to_async(fleet_selectors.top_agents)(tenant_id, timezone.now())

    async def fleet_charts(self, tenant_id: int, range_key: str) -> dict[str, dict[str, Any]]:
        return await sync_to_async(charts.fleet_charts)(tenant_id, series.parse_range(range_key))

    async def agent_charts(self, agent_id: UUID, range_key: str) -> dict[str, dict[str, Any]]:
        return await sync_to_async(charts.agent_charts)(agent_id, series.parse_range(range_key))


class ConsoleEventBus:
    async def latest_events(self, agent_id: UUID, limit: int) -> list[Event]:
        return await sync_to_async(
            lambda: list(Event.objects.filter(agent_id=agent_id).order_by("-occurred_at")[:limit])
        )()


# --- what the façade answers -----------------------------------------------------------


@dataclass
class DashboardOverview:
    tenant_id: str
    agents_summary: AgentsSummary
    resources: FleetResources
    top_agents: dict[str, list[TopAgent]]
    charts: dict[str, dict[str, Any]] | None
    metrics_available: bool
    range: str
    generated_at: Any


@dataclass
class ResourceUtilization:
    cpu_percent: float | None
    memory_mb: float | None
    tokens_per_min: float | None
    requests_per_min: float | None
    errors_per_min: float | None
    latency_p95_ms: float | None


@dataclass
class AgentDetail:
    agent_id: str
    tenant_id: str
    name: str
    external_id: str
    labels: dict[str, str]
    state: str  # observed
    desired_state: str
    pending: bool
    last_heartbeat_at: Any
    version: int
    quotas: dict[str, dict[str, int]]
    resource_utilization: ResourceUtilization
    recent_events: list[dict[str, Any]] = field(default_factory=list)
    charts: dict[str, dict[str, Any]] | None = None


class DashboardService:
    def __init__(
        self,
        state_manager: StateManager | None = None,
        metrics_engine: MetricsEngine | None = None,
        event_bus: EventBus | None = None,
        redis_client: AsyncCache | None = None,
        circuit_breaker: AsyncCircuitBreakerFactory | None = None,
    ) -> None:
        self.state_manager: StateManager = state_manager or ConsoleStateManager()
        self.metrics_engine: MetricsEngine = metrics_engine or ConsoleMetricsEngine()
        self.event_bus: EventBus = event_bus or ConsoleEventBus()
        self.redis_client = redis_client
        self.circuit_breaker = circuit_breaker or AsyncCircuitBreakerFactory(default_threshold=3, default_ttl=15)
        self._initialized = False

    async def initialize(self) -> None:
        await self.circuit_breaker.initialize()
        self._initialized = True

    async def _tenant(self, tenant_id: str | int) -> Tenant:
        tenant = await sync_to_async(tenant_by_ref)(tenant_id)
        if tenant is None:
            raise InterfaceError(ErrorCode.TENANT_NOT_FOUND, f"No tenant {tenant_id!r}.")
        return tenant

    async def _cached(self, kind: str, tenant_id: int, parts: tuple[object, ...], ttl: int, compute: Any) -> Any:
        if self.redis_client is None:
            try:
                found = await sync_to_async(tenant_cache.lookup)(kind, tenant_id, parts)
            except tenant_cache.CacheUnavailable:
                return await compute()
            if found is not tenant_cache.MISSING:
                return found
            value = await compute()
            await sync_to_async(tenant_cache.store)(kind, tenant_id, parts, ttl, value)
            return value
        try:
            key = "facade:" + await sync_to_async(tenant_cache.key)(kind, tenant_id, *parts)
            found = await self.redis_client.get(key)
            if found is not None:
                return pickle.loads(found)  # noqa: S301 - written by this service to its own cache
        except Exception as exc:
            log.warning("façade cache unavailable: %s", exc)
            return await compute()
        value = await compute()
        try:
            await self.redis_client.set(key, pickle.dumps(value), ex=ttl)
        except Exception as exc:
            log.warning("façade cache unavailable: %s", exc)
        return value

    async def _metrics(self, name: str, call: Any) -> Any:
        breaker = await self.circuit_breaker.get_breaker(f"dashboard-{name}")
        async with breaker:
            return await call()

    async def get_dashboard_overview(
        self, tenant_id: str | int, *, range: str = series.DEFAULT_RANGE
    ) -> DashboardOverview:
        tenant = await self._tenant(tenant_id)
        summary = await self._cached(
            "facade-summary", tenant.pk, (), settings.L10.cache_ttl_dashboard,
            lambda: self.state_manager.agents_summary(tenant.pk),
        )  # fmt: skip
        resources = await self.metrics_engine.fleet_resources(tenant.pk)
        top = await self.metrics_engine.top_agents(tenant.pk)
        charts, available = None, True
        try:
            charts = await self._metrics(
                "charts",
                lambda: self._cached(
                    "facade-charts", tenant.pk, (range,), settings.L10.cache_ttl_metrics,
                    lambda: self.metrics_engine.fleet_charts(tenant.pk, range),
                ),
            )  # fmt: skip
        except Exception as exc:  # series.MetricsUnavailable, an open breaker, a failing engine
            log.warning("overview of %s without charts: %s", tenant.slug, exc)
            available = False
        return DashboardOverview(
            tenant_id=tenant.slug,
            agents_summary=summary,
            resources=resources,
            top_agents=top,
            charts=charts,
            metrics_available=available,
            range=series.parse_range(range).key,
            generated_at=timezone.now(),
        )

    async def get_agent_detail(self, agent_id: str | UUID, *, range: str = series.DEFAULT_RANGE) -> AgentDetail:
        try:
            pk = UUID(str(agent_id))
        except ValueError:
            raise InterfaceError(ErrorCode.AGENT_NOT_FOUND, f"No agent {agent_id!r}: agent ids are UUIDs.") from None
        agent = await self.state_manager.get_agent(pk)
        if agent is None:
            raise InterfaceError(ErrorCode.AGENT_NOT_FOUND, f"No agent {agent_id}.")
        events = await self.event_bus.latest_events(pk, 15)
        try:
            charts = await self._metrics("agent-charts", lambda: self.metrics_engine.agent_charts(pk, range))
        except Exception as exc:
            log.warning("agent %s without charts: %s", pk, exc)
            charts = None
        return AgentDetail(
            agent_id=str(agent.pk),
            tenant_id=agent.tenant.slug,
            name=agent.name,
            external_id=agent.external_id,
            labels=agent.labels,
            state=agent.observed_state,
            desired_state=agent.desired_state,
            pending=agent.pending_text is not None,
            last_heartbeat_at=agent.last_heartbeat_at,
            version=agent.version,
            quotas=agent.quotas,
            resource_utilization=ResourceUtilization(
                cpu_percent=agent.cpu_percent,
                memory_mb=agent.memory_mb,
                tokens_per_min=agent.tokens_per_min,
                requests_per_min=agent.requests_per_min,
                errors_per_min=agent.errors_per_min,
                latency_p95_ms=agent.latency_p95_ms,
            ),
            recent_events=[
                {"type": e.type, "severity": e.severity, "message": e.message, "at": e.occurred_at, "data": e.data}
                for e in events
            ],
            charts=charts,
        )
