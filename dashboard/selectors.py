"""Reads for the dashboard's pages, composed from the apps below: the overview's figures
(fleet) and an agent's detail (fleet, its quota use from costs, its events). Charts are
in ``dashboard.charts``; the agent list's query is ``fleet.selectors.agent_list``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from costs.selectors import quota_usage
from events.models import Event, Severity
from fleet.models import Agent
from fleet.selectors import AgentsSummary, FleetResources, TopAgent, fleet_tiles, top_agents


@dataclass
class Overview:
    tenant_id: int
    agents_summary: AgentsSummary
    resources: FleetResources
    top_cpu: list[TopAgent]
    top_error_rate: list[TopAgent]
    top_tokens: list[TopAgent]
    generated_at: datetime


def overview(tenant_id: int, *, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    top = top_agents(tenant_id, now)
    summary, resources = fleet_tiles(tenant_id, now)  # one pass over the agents
    return Overview(
        tenant_id=tenant_id,
        agents_summary=summary,
        resources=resources,
        top_cpu=top["cpu"],
        top_error_rate=top["error_rate"],
        top_tokens=top["tokens"],
        generated_at=now,
    )


@dataclass
class QuotaBar:
    kind: str
    period: str
    limit: int
    used: int

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.used / self.limit) if self.limit else 100.0


@dataclass
class AgentDetail:
    agent: Agent
    quotas: list[QuotaBar]
    events: list[Event]
    control_events: list[Event]


# The agent page's event filter: the least severity shown. By default warnings and worse,
# so errors are not buried under the routine of task.started / task.completed.
EVENT_FILTERS = {
    "warning": ("Warnings and errors", (Severity.WARNING, Severity.ERROR, Severity.CRITICAL)),
    "info": ("Info and worse", (Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL)),
    "all": ("All", tuple(Severity.values)),
}
DEFAULT_EVENT_FILTER = "warning"
LATEST_EVENTS = 15


def agent_detail(
    agent: Agent, *, now: datetime | None = None, events: str | None = DEFAULT_EVENT_FILTER
) -> AgentDetail:
    """The agent page's figures: quota bars, and (unless ``events`` is None, for a part that
    shows none) its latest events by the filter ``events`` and its control events."""
    now = now or timezone.now()
    usage = quota_usage(agent, now)
    bars = [
        QuotaBar(kind, period, limit, usage.get(kind, {}).get(period, 0))
        for kind, periods in sorted((agent.quotas or {}).items())
        for period, limit in sorted(periods.items())
    ]
    if events is None:
        return AgentDetail(agent=agent, quotas=bars, events=[], control_events=[])
    severities = EVENT_FILTERS.get(events, EVENT_FILTERS[DEFAULT_EVENT_FILTER])[1]
    shown = Event.objects.filter(agent=agent, severity__in=severities).order_by("-occurred_at")
    control = list(Event.objects.filter(agent=agent, type__startswith="control.").order_by("-occurred_at")[:10])
    return AgentDetail(agent=agent, quotas=bars, events=list(shown[:LATEST_EVENTS]), control_events=control)
