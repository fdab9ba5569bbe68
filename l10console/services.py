"""The seed's Python façade: ``from l10console.services import ...``.

The services themselves live in each app's ``services.py``/``selectors.py``; this module
exposes them under the seed's names.
"""

from control.facade import ControlService
from control.services import ControlResult, ControlStatus
from dashboard.facade import (
    AgentDetail,
    AsyncCache,
    DashboardOverview,
    DashboardService,
    EventBus,
    MetricsEngine,
    StateManager,
)
from l10console.config import L10Settings
from l10console.errors import ErrorCode, InterfaceError
from l10console.gateway import WebSocketGateway

__all__ = [
    "AgentDetail",
    "AsyncCache",
    "ControlResult",
    "ControlService",
    "ControlStatus",
    "DashboardOverview",
    "DashboardService",
    "ErrorCode",
    "EventBus",
    "InterfaceError",
    "L10Settings",
    "MetricsEngine",
    "StateManager",
    "WebSocketGateway",
]
