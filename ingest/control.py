"""What an agent must obey: sent on register, in every heartbeat's answer and over the
agent socket whenever it changes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from ninja.responses import NinjaJSONEncoder

from approvals.selectors import decisions
from costs.selectors import quota_usage
from fleet.models import Agent, DesiredState
from fleet.sql import Heard


@dataclass(frozen=True)
class AgentControl:
    """The agent's desired state and quota limits; ``usage`` is what it has used in each
    limited period."""

    agent_id: str
    external_id: str
    desired_state: str
    version: int
    quotas: dict[str, dict[str, int]]
    usage: dict[str, dict[str, int]]
    heartbeat_interval: int
    pause_mode: str | None = None  # while paused: "now" or "after_task"
    pause_until: str | None = None  # while paused: when it resumes by itself
    # The decided ones of the approval requests the agent said it waits on (a heartbeat).
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, agent: Agent, *, now: datetime | None = None, waiting: Iterable[Any] = ()) -> AgentControl:
        return cls(
            agent_id=str(agent.pk),
            external_id=agent.external_id,
            desired_state=agent.desired_state,
            version=agent.version,
            pause_mode=agent.pause_mode if agent.desired_state == DesiredState.PAUSED else None,
            pause_until=agent.pause_until.isoformat() if agent.pause_until else None,
            quotas=agent.quotas or {},
            usage=quota_usage(agent, now or timezone.now()),
            heartbeat_interval=settings.L10.agent_heartbeat_interval,
            decisions=decisions(agent.pk, waiting),
        )

    def as_message(self) -> dict[str, Any]:
        return {"type": "control", **asdict(self)}


def heartbeat_answer(heard: Heard, *, tenant_id: int, external_id: str, now: datetime) -> bytes:
    """A heartbeat's answer as the API renders ``AgentControl.of`` (``AgentControlOut``,
    the same keys in the same order, encoded by the same encoder), built from the row the
    batched heartbeat statement returns, without a model instance or a validation pass:
    for the heartbeats a web process writes together (ingest/coalesce.py)."""
    usage: dict[str, dict[str, int]] = {}
    if heard.quotas:
        usage = quota_usage(Agent(id=heard.id, tenant_id=tenant_id, quotas=heard.quotas), now)
    paused = heard.desired_state == DesiredState.PAUSED
    answer = {
        "agent_id": str(heard.id), "external_id": external_id, "desired_state": heard.desired_state,
        "version": heard.version, "quotas": heard.quotas, "usage": usage,
        "heartbeat_interval": settings.L10.agent_heartbeat_interval,
        "pause_mode": heard.pause_mode if paused else None, "pause_until": heard.pause_until, "decisions": [],
    }  # fmt: skip
    return json.dumps(answer, cls=NinjaJSONEncoder).encode()
