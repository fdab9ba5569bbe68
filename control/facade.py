"""The Python API's ``ControlService`` (docs/python-api.md): async methods over ``control.services``.

``tenant_id`` is the tenant's slug or id, ``user_id`` the acting user's username,
``agent_id`` the agent's id or its external id. Every method returns a
``ControlResult`` (``status``, ``agent_id``, ``previous_state``, ``new_state``, …) or raises
``InterfaceError`` (E103xx for a refused operation).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from audit.services import Actor
from control.rules import Action, ControlRequest, ControlResult
from control.services import control_execute
from core.errors import ErrorCode, InterfaceError
from core.inputs import text_problem
from tenancy.selectors import tenant_by_ref
from tenancy.usernames import normalize_username


def _run(tenant_id: str | int, user_id: str, request: ControlRequest) -> ControlResult:
    tenant = tenant_by_ref(tenant_id)
    if tenant is None:
        raise InterfaceError(ErrorCode.TENANT_NOT_FOUND, f"No tenant {tenant_id!r}.")
    name = normalize_username(str(user_id)[:150])  # usernames are stored so (tenancy/usernames.py)
    user = None if text_problem(name) else User.objects.filter(username=name, is_active=True).first()
    if user is None:
        raise InterfaceError(ErrorCode.AUTH_REQUIRED, f"No active user {user_id!r}.")
    return control_execute(tenant=tenant, actor=Actor(user=user), request=request)


class ControlService:
    """``state_manager``, ``event_bus``, ``audit_logger`` and ``redis_client`` are accepted
    for the documented signature; the console's own services, hub, audit trail and Redis are
    used."""

    def __init__(
        self, state_manager: Any = None, event_bus: Any = None, audit_logger: Any = None, redis_client: Any = None
    ) -> None:
        self.state_manager = state_manager
        self.event_bus = event_bus
        self.audit_logger = audit_logger
        self.redis_client = redis_client

    async def _call(self, tenant_id: str | int, user_id: str, request: ControlRequest) -> ControlResult:
        return await sync_to_async(_run)(tenant_id, user_id, request)

    async def pause_agent(
        self, *, agent_id: str, tenant_id: str | int, user_id: str, reason: str = "", idempotency_key: str | None = None
    ) -> ControlResult:
        request = ControlRequest(Action.PAUSE, agent_id, reason=reason, idempotency_key=idempotency_key)
        return await self._call(tenant_id, user_id, request)

    async def resume_agent(
        self, *, agent_id: str, tenant_id: str | int, user_id: str, reason: str = "", idempotency_key: str | None = None
    ) -> ControlResult:
        request = ControlRequest(Action.RESUME, agent_id, reason=reason, idempotency_key=idempotency_key)
        return await self._call(tenant_id, user_id, request)

    async def emergency_stop_agent(
        self, *, agent_id: str, tenant_id: str | int, user_id: str, reason: str, idempotency_key: str | None = None
    ) -> ControlResult:
        request = ControlRequest(Action.STOP, agent_id, reason=reason, idempotency_key=idempotency_key)
        return await self._call(tenant_id, user_id, request)

    async def restart_agent(
        self, *, agent_id: str, tenant_id: str | int, user_id: str, reason: str = "", idempotency_key: str | None = None
    ) -> ControlResult:
        request = ControlRequest(Action.RESTART, agent_id, reason=reason, idempotency_key=idempotency_key)
        return await self._call(tenant_id, user_id, request)

    async def adjust_quota(
        self,
        *,
        agent_id: str,
        tenant_id: str | int,
        user_id: str,
        quota_type: str,
        new_limit: int,
        period: str = "day",
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> ControlResult:
        request = ControlRequest(
            Action.QUOTA,
            agent_id,
            reason=reason,
            quota_type=quota_type,
            period=period,
            new_limit=new_limit,
            idempotency_key=idempotency_key,
        )
        return await self._call(tenant_id, user_id, request)
