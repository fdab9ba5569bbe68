"""Reads of the fleet domain: one agent for a user, agents by external id, the agent list
and its label selectors, and the fleet's live figures (from each agent's latest report,
never from the time series; charts are in ``fleet.series``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from django.db.models import Count, DateTimeField, F, Func, Q, QuerySet, Value
from django.http import Http404

from core import stats
from core.errors import ErrorCode, InterfaceError
from fleet import sql, states
from fleet.labels import Requirement, with_selector
from fleet.models import Agent, ObservedState, error_rate
from fleet.states import fresh_since
from tenancy.access import AnyUser, checked, membership_for
from tenancy.models import Membership, Role, Tenant

# --- one agent --------------------------------------------------------------------------


def get_agent_for_user(
    user: AnyUser, agent_id: UUID | str, *, need: Role = Role.VIEWER, membership: Membership | None = None
) -> Agent:
    """The agent, if the user's role in its tenant is at least ``need``; else 404/403.

    ``membership`` is the user's membership the view already holds
    (``tenancy.decorators.tenant_view``): an agent of another tenant is then a 404 even if
    the user belongs to both (a URL under one tenant never shows another's agent), and
    the role is taken from it, so the agent is the one read.
    """
    if membership is not None and membership.user_id != getattr(user, "pk", None):
        raise Http404("No such agent.")
    try:
        agent = sql.agent_by_id(agent_id if isinstance(agent_id, UUID) else UUID(str(agent_id)))
    except (ValueError, TypeError):
        agent = None
    if agent is None:
        raise Http404("No such agent.")
    if membership is None:
        membership_for(user, agent.tenant_id, need=need)
        return agent
    if agent.tenant_id != membership.tenant_id:
        raise Http404("No such agent in this tenant.")
    checked(membership, need)
    return agent


def tenant_of_agent(ref: str) -> int | None:
    """The tenant of an agent named by its id, or by an external id only one tenant uses."""
    try:
        found = Agent.objects.filter(pk=UUID(ref)).values_list("tenant_id", flat=True).first()
    except ValueError:
        found = None
    if found is not None:
        return int(found)
    tenants = list(Agent.objects.filter(external_id=ref[:200]).values_list("tenant_id", flat=True)[:2])
    return int(tenants[0]) if len(tenants) == 1 else None


@dataclass(frozen=True)
class AgentRef:
    pk: UUID
    desired_state: str


def agent_refs(tenant: Tenant, external_ids: Iterable[str]) -> dict[str, AgentRef]:
    """external_id → the agent's id and desired state; every one must exist (E10807)."""
    wanted = set(external_ids)
    rows = Agent.objects.filter(tenant=tenant, external_id__in=wanted).values_list("external_id", "pk", "desired_state")
    agents = {external_id: AgentRef(pk, desired) for external_id, pk, desired in rows}
    missing = sorted(wanted - agents.keys())
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise InterfaceError(
            ErrorCode.INGEST_UNKNOWN_AGENT,
            f"{len(missing)} unknown external_id(s) in this tenant: {shown}. Register them first; nothing was stored.",
            details={"unknown_external_ids": missing[:100]},
        )
    return agents


# --- label selectors and the agent list ---------------------------------------------------


def pending_filter() -> Q:
    """Agents with a change under way (``fleet.states``)."""
    return states.pending_q()


SORTS = {
    "name": "name",
    "external_id": "external_id",
    "desired": "desired_state",
    "observed": "observed_state",
    "heartbeat": "last_heartbeat_at",
    "cpu": "cpu_percent",
    "memory": "memory_mb",
    "tokens": "tokens_per_min",
    "errors": "errors_per_min",
}


@dataclass(frozen=True)
class AgentQuery:
    state: str | None = None
    labels: tuple[Requirement, ...] = ()
    name: str | None = None
    sort: str = "name"
    descending: bool = False
    pending_only: bool = False


# What a row of the list shows: the rest of an agent (quotas, timestamps, …) is neither
# read nor cached with the page.
LIST_FIELDS = (
    "id",
    "tenant_id",
    "name",
    "external_id",
    "labels",
    "desired_state",
    "desired_changed_at",
    "desired_changed_by__username",
    "pause_reason",
    "pause_until",
    "pause_mode",
    "observed_state",
    "observed_changed_at",
    "last_heartbeat_at",
    "metrics_at",
    "cpu_percent",
    "memory_mb",
    "tokens_per_min",
    "errors_per_min",
)


def agent_list(tenant_id: int, query: AgentQuery) -> QuerySet[Agent]:
    agents = Agent.objects.filter(tenant_id=tenant_id)
    if query.state in ObservedState.values:
        agents = agents.filter(observed_state=query.state)
    agents = with_selector(agents, query.labels)
    if query.name:
        agents = agents.filter(Q(name__icontains=query.name) | Q(external_id__icontains=query.name))
    if query.pending_only:
        agents = agents.filter(pending_filter())
    column = F(SORTS.get(query.sort, "name"))
    order = column.desc(nulls_last=True) if query.descending else column.asc(nulls_last=True)
    return agents.order_by(order, "pk").select_related("desired_changed_by").only(*LIST_FIELDS)


def agents_by_ids(tenant_id: int, ids: Iterable[str]) -> QuerySet[Agent]:
    """The listed agents of the tenant, with what a row shows (a live page's changed rows)."""
    return (
        Agent.objects.filter(tenant_id=tenant_id, pk__in=list(ids))
        .select_related("desired_changed_by")
        .only(*LIST_FIELDS)
    )


# --- the fleet's live figures -------------------------------------------------------------


@dataclass
class AgentsSummary:
    total_count: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    pending_count: int = 0

    def count(self, state: str) -> int:
        return self.by_state.get(state, 0)

    @property
    def running_count(self) -> int:
        return self.count(ObservedState.RUNNING)

    @property
    def paused_count(self) -> int:
        return self.count(ObservedState.PAUSED)

    @property
    def stopped_count(self) -> int:
        return self.count(ObservedState.STOPPED)

    @property
    def error_count(self) -> int:
        return self.count(ObservedState.ERROR)

    @property
    def unresponsive_count(self) -> int:
        return self.count(ObservedState.UNRESPONSIVE)

    @property
    def starting_count(self) -> int:
        return self.count(ObservedState.STARTING)


@dataclass
class FleetResources:
    reporting: int = 0
    cpu_mean: float | None = None
    cpu_p95: float | None = None
    memory_mean: float | None = None
    memory_p95: float | None = None
    tokens_per_min: float = 0.0
    requests_per_min: float = 0.0
    failed_per_min: float = 0.0  # each agent's errors, capped at its requests

    @property
    def error_rate(self) -> float | None:
        """The fleet's failed requests per request, 0..1 (``core.stats.error_rate``)."""
        return stats.error_rate(self.failed_per_min, self.requests_per_min)


@dataclass
class TopAgent:
    id: str
    name: str
    value: float


def agents_summary(tenant_id: int) -> AgentsSummary:
    # Served by the (tenant, observed_state) index; one small grouped result.
    rows = Agent.objects.filter(tenant_id=tenant_id).values("observed_state", "desired_state").annotate(n=Count("pk"))
    summary = AgentsSummary()
    for row in rows:
        observed, desired, n = row["observed_state"], row["desired_state"], row["n"]
        summary.total_count += n
        summary.by_state[observed] = summary.by_state.get(observed, 0) + n
        if states.is_pending(desired, observed):
            summary.pending_count += n
    return summary


def fleet_resources(tenant_id: int, now: datetime) -> FleetResources:
    return FleetResources(*sql.fleet_resources(tenant_id, fresh_since(now)))


def fleet_tiles(tenant_id: int, now: datetime) -> tuple[AgentsSummary, FleetResources]:
    """``agents_summary`` and ``fleet_resources`` from one pass over the tenant's agents."""
    tiles = sql.fleet_tiles(tenant_id, fresh_since(now))
    return AgentsSummary(tiles.total, tiles.by_state, tiles.pending), FleetResources(*tiles.resources)


def _top(qs: QuerySet[Agent], column: str) -> list[TopAgent]:
    return [
        TopAgent(str(pk), name, value)
        for pk, name, value in qs.order_by(f"-{column}").values_list("pk", "name", column)[:10]
    ]


def top_agents(tenant_id: int, now: datetime) -> dict[str, list[TopAgent]]:
    """The ten reporting agents highest in CPU, error rate and tokens per minute.

    Each list walks its own index (``agent_top_cpu``, ``agent_top_error_rate``,
    ``agent_top_tokens`` in fleet/models.py) from the top, skipping agents whose metrics are
    no longer fresh, so it reads a few rows instead of sorting every live agent. The filters
    below are the indexes' conditions (``metrics_at >= …`` implies ``metrics_at IS NOT NULL``)
    and the orderings their expressions: change one only with the other.

    The bound is a sub-select, a value the planner cannot see: live agents report every few
    seconds, after the last ANALYZE, so the statistics of ``metrics_at`` say that almost
    none is live, and with the bound in sight the planner sorts a scan of the tenant instead
    of walking the index (docs/performance.md, "Tiles and filters at 50,000 agents")."""
    since = Func(
        Value(fresh_since(now), output_field=DateTimeField()),
        template="(SELECT %(expressions)s)",
        output_field=DateTimeField(),
    )
    live = Agent.objects.filter(tenant_id=tenant_id, metrics_at__gte=since)
    return {
        "cpu": _top(live.filter(cpu_percent__isnull=False), "cpu_percent"),
        "error_rate": _top(
            live.annotate(error_rate=error_rate()).filter(errors_per_min__gt=0, requests_per_min__gt=0), "error_rate"
        ),
        "tokens": _top(live.filter(tokens_per_min__gt=0), "tokens_per_min"),
    }
