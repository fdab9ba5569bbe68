"""Reads for the dashboard's pages, composed from the apps below: the overview's figures
(fleet) and an agent's detail (fleet, its quota use from costs, its events). Charts are
in ``dashboard.charts``; the agent list's query is ``fleet.selectors.agent_list``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from core import money
from costs import burn
from costs.selectors import period_end, quota_rates, quota_usage
from events.models import Event, Severity
from fleet.models import Agent, QuotaType
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
    per_hour: Decimal = Decimal(0)  # the last hour's rate, in the quota's unit (cents for cost)
    resets: datetime | None = None  # when its period ends
    now: datetime | None = None

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.used / self.limit) if self.limit else 100.0

    @property
    def countdown(self) -> str:
        """ "runs out in ~2 h 14 min at the current rate", and what is said instead
        (docs/costs.md, "Countdowns")."""
        if self.now is None or self.resets is None:
            return ""
        idle = "nothing is being spent now" if self.kind == QuotaType.COST_USD else "nothing is being used now"
        return burn.countdown(
            self.limit - self.used, self.per_hour, self.now, self.resets, idle=idle,
            lasts=f"lasts the {self.period} at the current rate",
        )  # fmt: skip

    @property
    def rate(self) -> str:
        """The rate as a person reads it: "$1.20/h", "12,400 tokens/h"."""
        if self.kind == QuotaType.COST_USD:
            return f"{money.usd(self.per_hour / 100)}/h"
        unit = "tokens" if self.kind == QuotaType.TOKENS else "calls"
        return f"{int(self.per_hour):,} {unit}/h"


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
    rates = quota_rates(agent, now)
    bars = [
        QuotaBar(
            kind,
            period,
            limit,
            usage.get(kind, {}).get(period, 0),
            rates.get(kind, Decimal(0)),
            period_end(period, now),
            now,
        )
        for kind, periods in sorted((agent.quotas or {}).items())
        for period, limit in sorted(periods.items())
    ]
    if events is None:
        return AgentDetail(agent=agent, quotas=bars, events=[], control_events=[])
    severities = EVENT_FILTERS.get(events, EVENT_FILTERS[DEFAULT_EVENT_FILTER])[1]
    shown = Event.objects.filter(agent=agent, severity__in=severities).order_by("-occurred_at")
    control = list(Event.objects.filter(agent=agent, type__startswith="control.").order_by("-occurred_at")[:10])
    return AgentDetail(agent=agent, quotas=bars, events=list(shown[:LATEST_EVENTS]), control_events=control)
