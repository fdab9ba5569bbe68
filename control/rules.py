"""What a control request may ask, and what each action does to an agent's desired state.

The rules of a control operation, apart from how it runs (``control.services``): the
actions and the role each needs, the request and its fingerprint (for idempotency), the
checks of its fields (each mistake with its E103xx code), and the state machine.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from django.utils import timezone

from core.errors import ErrorCode, InterfaceError
from core.inputs import text_problem
from fleet.models import Agent, DesiredState, PauseMode, QuotaPeriod, QuotaType
from tenancy.models import Role

KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")
MAX_REASON = 500
MAX_QUOTA = 10**12
MAX_PAUSE = timedelta(days=7)
MAX_PAUSE_MINUTES = int(MAX_PAUSE.total_seconds() // 60)


class Action(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    RESTART = "restart"
    QUOTA = "quota"


NEEDS = {
    Action.PAUSE: Role.OPERATOR,
    Action.RESUME: Role.OPERATOR,
    Action.STOP: Role.ADMIN,
    Action.RESTART: Role.ADMIN,
    Action.QUOTA: Role.ADMIN,
}


class ControlStatus(StrEnum):
    SUCCESS = "success"  # committed and sent to the agent; its confirmation comes separately
    NOOP = "noop"  # nothing to change (pausing a paused agent)


@dataclass(frozen=True)
class ControlRequest:
    action: Action
    agent: str  # the agent's id, or its external id in the tenant
    reason: str = ""
    quota_type: str | None = None
    period: str = QuotaPeriod.DAY
    new_limit: Any = None
    # A pause's hold: for some minutes, or until a time (then it resumes by itself), and
    # whether tasks in hand stop at their next checkpoint ("now") or finish first.
    pause_minutes: Any = None
    pause_until: Any = None
    mode: str = PauseMode.AFTER_TASK
    idempotency_key: str | None = None
    batch_id: UUID | None = None

    def fingerprint(self, agent_id: UUID) -> str:
        body = {
            "action": str(self.action),
            "agent": str(agent_id),
            "reason": self.reason,
            "quota_type": self.quota_type,
            "period": self.period,
            "new_limit": self.new_limit,
            "pause_minutes": self.pause_minutes,
            "pause_until": self.pause_until,
            "mode": self.mode,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ControlResult:
    status: ControlStatus
    action: str
    agent_id: str
    previous_state: str
    new_state: str
    version: int
    message: str
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("replayed")
        return body


def validate(request: ControlRequest) -> None:
    if not isinstance(request.reason, str) or len(request.reason) > MAX_REASON:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_REQUEST, f"The reason may be at most {MAX_REASON} characters.")
    problem = text_problem(request.reason, multiline=True)
    if problem:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_REQUEST, f"The reason {problem}.")
    if request.action == Action.STOP and not request.reason.strip():
        raise InterfaceError(ErrorCode.CONTROL_REASON_REQUIRED, "An emergency stop needs a reason.")
    if request.idempotency_key is not None and not KEY_PATTERN.match(request.idempotency_key):
        raise InterfaceError(ErrorCode.CONTROL_BAD_KEY)
    if request.action == Action.PAUSE:
        _validate_pause(request)
    if request.action == Action.QUOTA:
        if request.quota_type not in QuotaType.values:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_QUOTA,
                f"quota_type must be one of {', '.join(QuotaType.values)}, not {request.quota_type!r}.",
            )
        if request.period not in QuotaPeriod.values:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_QUOTA,
                f"period must be one of {', '.join(QuotaPeriod.values)}, not {request.period!r}.",
            )
        limit = request.new_limit
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_QUOTA:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_QUOTA, f"new_limit must be a whole number from 0 to {MAX_QUOTA:,}."
            )


def _validate_pause(request: ControlRequest) -> None:
    if request.mode not in PauseMode.values:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_PAUSE, f"mode must be one of {', '.join(PauseMode.values)}.")
    minutes, until = request.pause_minutes, request.pause_until
    if minutes is not None and until is not None:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_PAUSE, "Give minutes or until, not both.")
    if minutes is not None and (
        not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_PAUSE_MINUTES
    ):
        raise InterfaceError(
            ErrorCode.CONTROL_INVALID_PAUSE, f"minutes must be a whole number from 1 to {MAX_PAUSE_MINUTES:,}."
        )
    if until is not None:
        if not isinstance(until, datetime) or until.tzinfo is None:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_PAUSE, "until must be a time with its zone, e.g. 2026-11-25T14:00Z."
            )
        now = timezone.now()
        if not now < until <= now + MAX_PAUSE:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_PAUSE, "until must be in the future and at most 7 days away."
            )


def transition(agent: Agent, action: Action) -> tuple[str | None, str]:
    """(the new desired state, or None for nothing to do; what to tell the person)."""
    state = agent.desired_state
    stopped = state == DesiredState.STOPPED
    if action == Action.PAUSE:
        if stopped:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_TRANSITION, "The agent is stopped; an admin must restart it first."
            )
        if state == DesiredState.PAUSED:
            return None, "The agent is already paused."
        return DesiredState.PAUSED, "Pause sent to the agent."
    if action == Action.RESUME:
        if stopped:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_TRANSITION,
                "The agent was stopped; resuming cannot bring it back. An admin must restart it.",
            )
        if state == DesiredState.RUNNING:
            return None, "The agent is already running."
        return DesiredState.RUNNING, "Resume sent to the agent."
    if action == Action.STOP:
        if stopped:
            return None, "The agent is already stopped."
        return DesiredState.STOPPED, "Emergency stop sent to the agent."
    if action == Action.RESTART:
        if not stopped:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_TRANSITION, "Only a stopped agent is restarted; pause or resume this one."
            )
        return DesiredState.RUNNING, "Restart sent to the agent."
    raise AssertionError(action)
