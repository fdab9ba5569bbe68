"""The control operations as JSON: ``POST /api/v1/agents/{id}/pause|resume|stop|restart|quota``.

Authenticated by a personal API token (``Authorization: Bearer l10p_…``): the call acts
as its user, with that user's role in the agent's tenant. An agent of a tenant the user
does not belong to is a 404, as one that does not exist. ``Idempotency-Key`` (optional)
makes a retry safe: the stored answer comes back with ``Idempotent-Replayed: true``.
A body that does not fit its shape gets the control code of the field at fault
(``error_code``), as the service would answer it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal
from uuid import UUID

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from pydantic import AwareDatetime, Field, Strict

from audit.services import request_actor
from control.rules import MAX_PAUSE_MINUTES, MAX_QUOTA, MAX_REASON, Action, ControlRequest
from control.services import control_execute
from core.errors import ErrorCode, InterfaceError
from core.schemas import API_ERRORS, PARAGRAPH, ErrorOut, StrictSchema
from tenancy.api_auth import PersonalBearer
from tenancy.models import PersonalToken


class ControlBearer(PersonalBearer):
    """A person's token, as ``PersonalBearer``; but when the rate limiter's store (Redis)
    cannot be reached, the call goes on to the control service marked refused, which answers
    E10306 (nothing changed) and audits the refused attempt in the agent's tenant, as every
    refusal of control is (docs/api.md, "Control during a Redis outage")."""

    def limit(self, request: HttpRequest, found: Any) -> None:
        try:
            super().limit(request, found)
        except InterfaceError as exc:
            if exc.code != ErrorCode.SERVICE_UNAVAILABLE:
                raise
            request.l10_refusal = InterfaceError(  # type: ignore[attr-defined]
                ErrorCode.CONTROL_UNAVAILABLE, "Redis cannot be reached; nothing was changed."
            )


router = Router(auth=ControlBearer(), tags=["control"])

Reason = Annotated[str, Strict(), Field(max_length=MAX_REASON), PARAGRAPH]


class ReasonIn(StrictSchema):
    reason: Reason = ""


class PauseIn(StrictSchema):
    reason: Reason = ""
    minutes: Annotated[int, Strict(), Field(ge=1, le=MAX_PAUSE_MINUTES)] | None = None
    until: AwareDatetime | None = None
    mode: Literal["after_task", "now"] = "after_task"


class StopIn(StrictSchema):
    reason: Reason = ""  # required: the service answers its absence with E10307


class QuotaIn(StrictSchema):
    quota_type: Literal["api_calls", "tokens", "cost_usd"] = Field(
        description="cost_usd limits are in US cents (5000 is $50.00)."
    )
    new_limit: Annotated[int, Strict(), Field(ge=0, le=MAX_QUOTA)]
    period: Literal["hour", "day", "month"] = "day"
    reason: Reason = ""


class ControlOut(Schema):
    status: str
    action: str
    agent_id: str
    previous_state: str
    new_state: str
    version: int
    message: str


# A field at fault → the code the service gives the same mistake.
FIELD_CODES = {
    "quota_type": ErrorCode.CONTROL_INVALID_QUOTA,
    "new_limit": ErrorCode.CONTROL_INVALID_QUOTA,
    "period": ErrorCode.CONTROL_INVALID_QUOTA,
    "minutes": ErrorCode.CONTROL_INVALID_PAUSE,
    "until": ErrorCode.CONTROL_INVALID_PAUSE,
    "mode": ErrorCode.CONTROL_INVALID_PAUSE,
}


def error_code(fields: Sequence[str]) -> ErrorCode:
    """The code of a body that does not fit: its first field's, else E10310."""
    for name in fields:
        if name in FIELD_CODES:
            return FIELD_CODES[name]
    return ErrorCode.CONTROL_INVALID_REQUEST


def _call(request: HttpRequest, response: HttpResponse, agent_id: UUID, action: Action, **fields: Any) -> ControlOut:
    token: PersonalToken = request.auth  # type: ignore[attr-defined]
    actor = request_actor(request, user=token.user)
    key = request.headers.get("Idempotency-Key")
    result = control_execute(
        actor=actor,
        request=ControlRequest(action, str(agent_id), idempotency_key=key, **fields),
        refusal=getattr(request, "l10_refusal", None),
    )
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return ControlOut(**result.as_dict())


@router.post("/{agent_id}/pause", response={200: ControlOut, API_ERRORS: ErrorOut}, summary="Pause an agent (operator)")
def pause(request: HttpRequest, response: HttpResponse, agent_id: UUID, payload: PauseIn) -> ControlOut:
    return _call(
        request,
        response,
        agent_id,
        Action.PAUSE,
        reason=payload.reason,
        pause_minutes=payload.minutes,
        pause_until=payload.until,
        mode=payload.mode,
    )


@router.post(
    "/{agent_id}/resume", response={200: ControlOut, API_ERRORS: ErrorOut}, summary="Resume a paused agent (operator)"
)
def resume(request: HttpRequest, response: HttpResponse, agent_id: UUID, payload: ReasonIn) -> ControlOut:
    return _call(request, response, agent_id, Action.RESUME, reason=payload.reason)


@router.post(
    "/{agent_id}/stop",
    response={200: ControlOut, API_ERRORS: ErrorOut},
    summary="Emergency-stop an agent (admin; reason required)",
)
def stop(request: HttpRequest, response: HttpResponse, agent_id: UUID, payload: StopIn) -> ControlOut:
    return _call(request, response, agent_id, Action.STOP, reason=payload.reason)


@router.post(
    "/{agent_id}/restart", response={200: ControlOut, API_ERRORS: ErrorOut}, summary="Restart a stopped agent (admin)"
)
def restart(request: HttpRequest, response: HttpResponse, agent_id: UUID, payload: ReasonIn) -> ControlOut:
    return _call(request, response, agent_id, Action.RESTART, reason=payload.reason)


@router.post(
    "/{agent_id}/quota",
    response={200: ControlOut, API_ERRORS: ErrorOut},
    summary="Set an api_calls or tokens limit (admin)",
)
def quota(request: HttpRequest, response: HttpResponse, agent_id: UUID, payload: QuotaIn) -> ControlOut:
    return _call(
        request,
        response,
        agent_id,
        Action.QUOTA,
        reason=payload.reason,
        quota_type=payload.quota_type,
        new_limit=payload.new_limit,
        period=payload.period,
    )
