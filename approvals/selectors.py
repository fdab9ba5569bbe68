"""Reads of approvals: the inbox (pending first, oldest first), the history and its
filters, the count the header shows, and the decisions an agent waits for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from approvals.models import ApprovalRequest, State
from fleet.models import Agent


def pending_count(tenant_id: int) -> int:
    return ApprovalRequest.objects.filter(tenant_id=tenant_id, state=State.PENDING).count()


def pending(tenant_id: int, *, agent_id: UUID | None = None, limit: int = 1000) -> list[ApprovalRequest]:
    """The tenant's (or one agent's) pending requests, oldest first, with their agent and
    the approvals given so far."""
    found = ApprovalRequest.objects.filter(tenant_id=tenant_id, state=State.PENDING)
    if agent_id is not None:
        found = found.filter(agent_id=agent_id)
    return list(found.select_related("agent").prefetch_related("votes").order_by("created_at", "pk")[:limit])


@dataclass(frozen=True)
class HistoryFilter:
    agent: str = ""  # external id
    action: str = ""
    decision: str = ""  # approved, rejected, expired
    decided_by: str = ""

    def query(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


def history(tenant_id: int, given: HistoryFilter) -> QuerySet[ApprovalRequest]:
    """The tenant's decided requests, newest first, by ``given``."""
    found = ApprovalRequest.objects.filter(tenant_id=tenant_id).exclude(state=State.PENDING)
    if given.agent:
        found = found.filter(agent__external_id=given.agent)
    if given.action:
        found = found.filter(action=given.action)
    if given.decision:
        found = found.filter(state=given.decision)
    if given.decided_by:
        found = found.filter(decided_by_label=given.decided_by)
    return found.select_related("agent").order_by("-created_at", "-pk")


def decisions(agent_id: UUID, ids: Iterable[UUID]) -> list[dict[str, Any]]:
    """The decided requests among ``ids`` of this agent, as the agent is told them."""
    wanted = list(ids)[:100]
    if not wanted:
        return []
    found = ApprovalRequest.objects.filter(agent_id=agent_id, pk__in=wanted).exclude(state=State.PENDING)
    return [said(r) for r in found.select_related("agent")]


def said(request: ApprovalRequest, agent: Agent | None = None) -> dict[str, Any]:
    """What the hub says of a request (and what an agent is told of its decision)."""
    agent = agent or request.agent
    return {
        "approval_id": str(request.pk), "agent_id": str(agent.pk), "external_id": agent.external_id,
        "key": request.key, "action": request.action, "state": request.state, "approved": request.approved,
        "decided_by": request.decided_by_label or None, "comment": request.comment,
        "decided_at": request.decided_at.isoformat() if request.decided_at else None,
        "expires_at": request.expires_at.isoformat(),
    }  # fmt: skip
