"""Cost tracking in the Python API: ``CostService`` (``from l10console.services import
CostService``), as docs/python-api.md shows it; the reads of ``costs.selectors``. Amounts
are ``Decimal`` (core/money.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.utils import timezone

from core.errors import ErrorCode, InterfaceError
from costs import selectors
from costs.selectors import CostBreakdown
from fleet.models import Agent
from tenancy.selectors import tenant_by_ref


class CostService:
    def __init__(self, metrics_engine: Any = None) -> None:
        # The seed's signature: costs are read from the console's own usage records; an
        # engine given here is kept for callers that pass one along.
        self.metrics_engine = metrics_engine

    async def get_cost_summary(
        self, tenant_id: str | int, *, start: datetime | None = None, end: datetime | None = None
    ) -> CostBreakdown:
        """The tenant's (slug or id) costs from ``start`` to ``end``, month to date by
        default: ``total_cost_usd``, ``cost_by_model`` (most first), and the usage whose
        cost is unknown (``unpriced_records``, ``unpriced_models``)."""

        def read() -> CostBreakdown:
            tenant = tenant_by_ref(tenant_id)
            if tenant is None:
                raise InterfaceError(ErrorCode.TENANT_NOT_FOUND)
            first, last = selectors.cost_range(start, end, timezone.now())
            return selectors.tenant_costs(int(tenant.pk), first, last)

        return await sync_to_async(read)()

    async def get_agent_cost(
        self, agent_id: str | UUID, *, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, Any]:
        """One agent's costs (by its id) from ``start`` to ``end``: ``total_cost`` and
        ``cost_by_model`` as ``Decimal``, ``unpriced_records``."""

        def read() -> dict[str, Any]:
            try:
                agent = Agent.objects.filter(pk=UUID(str(agent_id))).first()
            except ValueError:
                agent = None
            if agent is None:
                raise InterfaceError(ErrorCode.AGENT_NOT_FOUND)
            first, last = selectors.cost_range(start, end, timezone.now())
            found = selectors.agent_costs(agent, first, last)
            return {
                "agent_id": str(agent.pk),
                "start": first,
                "end": last,
                "total_cost": found.total_cost_usd,
                "cost_by_model": found.cost_by_model,
                "unpriced_records": found.unpriced_records,
            }

        return await sync_to_async(read)()
