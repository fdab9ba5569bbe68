"""The console's Python API: ``from l10console.services import ...`` (docs/python-api.md).

The services themselves live in each app's ``services.py``/``selectors.py``; this module
gathers them under one name and wires the few that span apps.
"""

from alerts.facade import ActiveAlert, AlertService
from audit.facade import AuditLogger, AuditRecord, AuditResponse, AuditService
from control.facade import ControlService
from control.rules import ControlResult, ControlStatus
from core.config import L10Settings
from core.errors import ErrorCode, InterfaceError
from costs.facade import CostService
from costs.selectors import CostBreakdown
from dashboard.facade import (
    AgentDetail,
    AsyncCache,
    DashboardOverview,
    DashboardService,
    EventBus,
    MetricsEngine,
    StateManager,
)
from events.facade import EventRecord, EventResponse, EventService
from fleet.selectors import tenant_of_agent
from realtime import gateway


class WebSocketGateway(gateway.WebSocketGateway):
    """The event gateway; a broadcast naming an agent goes to that agent's tenant."""

    def tenant_of_agent(self, agent_ref: str) -> int | None:
        return tenant_of_agent(agent_ref)


__all__ = [
    "ActiveAlert",
    "AgentDetail",
    "AlertService",
    "AsyncCache",
    "AuditLogger",
    "AuditRecord",
    "AuditResponse",
    "AuditService",
    "ControlResult",
    "ControlService",
    "ControlStatus",
    "CostBreakdown",
    "CostService",
    "DashboardOverview",
    "DashboardService",
    "ErrorCode",
    "EventBus",
    "EventRecord",
    "EventResponse",
    "EventService",
    "InterfaceError",
    "L10Settings",
    "MetricsEngine",
    "StateManager",
    "WebSocketGateway",
]
