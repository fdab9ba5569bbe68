"""The control operations as JSON: ``POST /api/v1/agents/{id}/pause|resume|stop|restart|quota``.

Authenticated by a personal API token (``Authorization: Bearer l10p_…``): the call acts
as its user, with that user's role in the agent's tenant. An agent of a tenant the user
does not belong to is a 404, as one that does not exist. ``Idempotency-Key`` (optional)
makes a retry safe: the stored answer comes back with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from django.db import connection
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from ninja.security import HttpBearer
from pydantic import Field, StrictStr

from audit.services import Actor
from control.services import Action, ControlRequest, ControlResult, control_execute
from fleet.models import Agent
from l10console import ratelimit
from l10console.errors import ErrorCode, InterfaceError
from l10console.tenancy.models import Membership, PersonalToken, Tenant
from l10console.tenancy.services import personal_token_authenticate

Reason = Annotated[StrictStr, Field(max_length=500)]


class PersonalBearer(HttpBearer):
    """``Authorization: Bearer l10p_…``: a person's token, rate-limited per token."""

    openapi_description = "A personal API token, created under Personal tokens; it acts with your role."

    def authenticate(self, request: HttpRequest, token: str) -> PersonalToken:
        if not token.strip():
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        personal = personal_token_authenticate(token)
        ratelimit.enforce_per_token("control", personal.pk)
        return personal


router = Router(auth=PersonalBearer(), tags=["control"])


class ReasonIn(Schema):
    reason: Reason = ""


class PauseIn(Schema):
    reason: Reason = ""
    # Checked by the service: minutes (1 to 10,080) or until (an aware time), and the mode.
    minutes: Any = None
    until: datetime | None = None
    mode: Any = "after_task"


class StopIn(Schema):
    reason: Reason = ""  # required: the service answers its absence with E10307


class QuotaIn(Schema):
    # Checked by the service, so every bad value gets the quota's own code (E10303).
    quota_type: Any = None
    new_limit: Any = None
    period: Any = "day"
    reason: Reason = ""


class ControlOut(Schema):
    status: str
    action: str
    agent_id: str
    previous_state: str
    new_state: str
    version: int
    message: str


@functools.cache
def _agent_statement(columns: str) -> str:
    agents, tenants, members = Agent._meta.db_table, Tenant._meta.db_table, Membership._meta.db_table
    return (
        f"SELECT {columns}, t.slug AS tenant_slug, t.name AS tenant_name, "  # noqa: S608 - constants only
        f"(SELECT m.role FROM {members} AS m WHERE m.user_id = %s AND m.tenant_id = a.tenant_id) AS caller_role "
        f"FROM {agents} AS a JOIN {tenants} AS t ON t.id = a.tenant_id WHERE a.id = %s"
    )


def _agent_and_role(agent_id: UUID, user_id: int) -> tuple[Agent | None, str | None]:
    """The agent, its tenant and the caller's role there, in one plain statement (the
    request's first read; compiling it as an ORM query cost more than running it). On
    PostgreSQL only the columns control reads; the service locks the row and reads its
    state again before deciding."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_agent_statement(CONTROL_COLUMNS), [user_id, agent_id])
            row = cursor.fetchone()
        if row is None:
            return None, None
        pk, tenant_id, external_id, name, version, desired_state, slug, tenant_name, role = row
        tenant = Tenant(id=tenant_id, slug=slug, name=tenant_name)
        agent = Agent(
            id=pk, tenant=tenant, external_id=external_id, name=name, version=version, desired_state=desired_state
        )
        return agent, role
    pk_value = Agent._meta.pk.get_db_prep_value(agent_id, connection)
    found = list(Agent.objects.raw(_agent_statement("a.*"), [user_id, pk_value]))
    if not found:
        return None, None
    agent = found[0]
    agent.tenant = Tenant(id=agent.tenant_id, slug=agent.tenant_slug, name=agent.tenant_name)  # type: ignore[attr-defined]
    return agent, agent.caller_role  # type: ignore[attr-defined]


CONTROL_COLUMNS = "a.id, a.tenant_id, a.external_id, a.name, a.version, a.desired_state"


def _call(request: HttpRequest, agent_id: UUID, action: Action, **fields: Any) -> HttpResponse:
    from l10console.api import api

    token: PersonalToken = request.auth  # type: ignore[attr-defined]
    agent, role = _agent_and_role(agent_id, token.user_id)
    if agent is None or role is None:
        raise InterfaceError(ErrorCode.AGENT_NOT_FOUND, f"No agent {agent_id}.")
    actor = Actor(
        user=token.user,
        ip=request.META.get("REMOTE_ADDR"),
        user_agent=request.headers.get("User-Agent", ""),
        request_id=request.headers.get("X-Request-ID", "")[:64] or secrets.token_hex(8),
    )
    key = request.headers.get("Idempotency-Key")
    result: ControlResult = control_execute(
        tenant=agent.tenant,
        actor=actor,
        request=ControlRequest(action, str(agent.pk), idempotency_key=key, **fields),
        agent=agent,
        role=role,
    )
    response = api.create_response(request, result.as_dict(), status=200)
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


@router.post("/{agent_id}/pause", response=ControlOut, summary="Pause an agent (operator)")
def pause(request: HttpRequest, agent_id: UUID, payload: PauseIn) -> HttpResponse:
    return _call(
        request,
        agent_id,
        Action.PAUSE,
        reason=payload.reason,
        pause_minutes=payload.minutes,
        pause_until=payload.until,
        mode=payload.mode,
    )


@router.post("/{agent_id}/resume", response=ControlOut, summary="Resume a paused agent (operator)")
def resume(request: HttpRequest, agent_id: UUID, payload: ReasonIn) -> HttpResponse:
    return _call(request, agent_id, Action.RESUME, reason=payload.reason)


@router.post("/{agent_id}/stop", response=ControlOut, summary="Emergency-stop an agent (admin; reason required)")
def stop(request: HttpRequest, agent_id: UUID, payload: StopIn) -> HttpResponse:
    return _call(request, agent_id, Action.STOP, reason=payload.reason)


@router.post("/{agent_id}/restart", response=ControlOut, summary="Restart a stopped agent (admin)")
def restart(request: HttpRequest, agent_id: UUID, payload: ReasonIn) -> HttpResponse:
    return _call(request, agent_id, Action.RESTART, reason=payload.reason)


@router.post("/{agent_id}/quota", response=ControlOut, summary="Set an api_calls or tokens limit (admin)")
def quota(request: HttpRequest, agent_id: UUID, payload: QuotaIn) -> HttpResponse:
    return _call(
        request,
        agent_id,
        Action.QUOTA,
        reason=payload.reason,
        quota_type=payload.quota_type,
        new_limit=payload.new_limit,
        period=payload.period,
    )
