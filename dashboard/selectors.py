"""Reads for the dashboard pages."""

from __future__ import annotations

from django.db.models import QuerySet

from fleet.models import Agent, ObservedState
from l10console.tenancy.models import Tenant


def agents_for_list(tenant: Tenant, *, state: str | None = None, name: str | None = None) -> QuerySet[Agent]:
    agents = Agent.objects.filter(tenant=tenant)
    if state in ObservedState.values:
        agents = agents.filter(observed_state=state)
    if name:
        agents = agents.filter(name__icontains=name)
    return agents.order_by("name", "pk")
