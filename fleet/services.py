"""Writes of the fleet domain: an agent's registration, its heartbeats and state reports,
and what it is told to do (desired state and quotas, the mechanism under control).

Every change publishes its hub event after commit and invalidates the tenant's cached
pages. Metric batches are in ``fleet.samples``; the periodic liveness checks in
``fleet.liveness``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from core import tenant_cache
from events.models import Severity
from events.services import emit
from fleet import sql
from fleet.models import Agent, DesiredState, ObservedState, PauseMode
from realtime import hub
from tenancy.models import Tenant

# --- what the hub hears -------------------------------------------------------------------


# Observed states worth a warning in the event store.
TROUBLED: dict[str, str] = {ObservedState.ERROR: Severity.ERROR, ObservedState.UNRESPONSIVE: Severity.WARNING}


def _publish_state_changed(agent: Agent, previous_state: str, now: datetime) -> None:
    """The hub's ``agent.state.changed`` and the event store's ``agent.state_changed``."""
    state = str(agent.observed_state)
    emit(
        agent.tenant_id, "agent.state_changed", agent_id=agent.pk, external_id=agent.external_id,
        severity=TROUBLED.get(state, Severity.INFO),
        message=f"{agent.external_id} is {state} (was {previous_state}).",
        data={"state": state, "previous_state": previous_state, "desired_state": str(agent.desired_state)}, at=now,
    )  # fmt: skip
    hub.publish(
        agent.tenant_id,
        "agent.state.changed",
        {
            "agent_id": agent.pk,
            "external_id": agent.external_id,
            "state": agent.observed_state,
            "previous_state": previous_state,
            "desired_state": agent.desired_state,
            "timestamp": now,
        },
    )


def _publish_control(agent: Agent, action: str, **details: Any) -> None:
    hub.publish(
        agent.tenant_id,
        "control.action",
        {
            "agent_id": agent.pk,
            "external_id": agent.external_id,
            "action": action,
            "desired_state": agent.desired_state,
            "version": agent.version,
            **details,
        },
    )


def _reading_data(reading: sql.Reading) -> dict[str, Any]:
    return {
        "cpu_percent": reading.cpu_percent,
        "memory_mb": reading.memory_mb,
        "tokens": reading.tokens,
        "requests": reading.requests,
        "errors": reading.errors,
        "latency_p95_ms": reading.latency_p95_ms,
    }


def _heartbeat_event(
    agent_id: UUID, external_id: str, state: str, reading: sql.Reading | None, at: datetime
) -> dict[str, Any]:
    """The hub's ``agent.heartbeat``."""
    event: dict[str, Any] = {"agent_id": agent_id, "external_id": external_id, "state": state}
    if reading is not None:
        event["metrics"] = _reading_data(reading)
    event["timestamp"] = at
    return event


# --- what agents report ---------------------------------------------------------------------


@transaction.atomic
def agent_register(
    *, tenant: Tenant, external_id: str, name: str | None = None, labels: dict[str, str] | None = None
) -> tuple[Agent, bool]:
    """Create the agent, or update its name and labels; returns (agent, created)."""
    agent, created = Agent.objects.get_or_create(
        tenant=tenant, external_id=external_id, defaults={"name": name or external_id, "labels": labels or {}}
    )
    if created:
        tenant_cache.invalidate(tenant.pk)
        hub.publish(
            tenant.pk,
            "agent.registered",
            {"agent_id": agent.pk, "external_id": agent.external_id, "name": agent.name, "labels": agent.labels},
        )
        return agent, True
    changed: list[str] = []
    if name is not None and name != agent.name:
        agent.name = name
        changed.append("name")
    if labels is not None and labels != agent.labels:
        agent.labels = labels
        changed.append("labels")
    if changed:
        agent.save(update_fields=[*changed, "updated_at"])
    return agent, False


def agent_heartbeat(
    *, tenant: Tenant, external_id: str, state: str, reading: sql.Reading | None = None, at: datetime | None = None
) -> Agent:
    """Record the agent's observed state and metrics. Always accepted, also from a stopped agent.

    The returned agent carries what the answer needs (id, external id, desired state,
    version, quotas, pause, observed state); on PostgreSQL it is not a full row.
    """
    now = timezone.now()
    agent, previous_state = sql.heartbeat(tenant, external_id, state, reading, at, now)
    if previous_state != state:
        tenant_cache.invalidate(tenant.pk)
        _publish_state_changed(agent, previous_state, now)
    hub.publish(tenant.pk, "agent.heartbeat", _heartbeat_event(agent.pk, agent.external_id, state, reading, at or now))
    return agent


@transaction.atomic
def agent_heartbeats(beats: Sequence[sql.Beat]) -> list[sql.Heard | None]:
    """Record a batch of heartbeats, at most one per agent, in one transaction and one
    statement; each is what ``agent_heartbeat`` records, and publishes what it publishes
    after commit. For each beat in order, what its answer needs of the agent, or None for
    an agent its tenant does not have (nothing recorded for that beat)."""
    now = timezone.now()
    found = sql.heartbeats(beats, now)
    heard: dict[int, list[dict[str, Any]]] = {}
    changed: set[int] = set()
    for beat, row in zip(beats, found, strict=True):
        if row is None:
            continue
        tenant_id = beat.tenant.pk
        if row.previous_state != beat.state:
            changed.add(tenant_id)
            agent = Agent(id=row.id, tenant_id=tenant_id, external_id=beat.external_id, observed_state=beat.state,
                          desired_state=row.desired_state)  # fmt: skip
            _publish_state_changed(agent, row.previous_state, now)
        event = _heartbeat_event(row.id, beat.external_id, beat.state, beat.reading, beat.at or now)
        heard.setdefault(tenant_id, []).append(event)
    for tenant_id in changed:
        tenant_cache.invalidate(tenant_id)
    for tenant_id, events in heard.items():
        hub.publish_many(tenant_id, "agent.heartbeat", events)
    return found


def agent_state_report(*, agent: Agent, state: str) -> None:
    """An observed state reported over the agent socket: also a sign of life."""
    now = timezone.now()
    fields: dict[str, Any] = {"last_heartbeat_at": now, "updated_at": now}
    previous_state = agent.observed_state
    if previous_state != state:
        fields.update(observed_state=state, observed_changed_at=now)
    Agent.objects.filter(pk=agent.pk).update(**fields)
    for name, value in fields.items():
        setattr(agent, name, value)
    if previous_state != state:
        # After the write: a page read between a bump and the write would cache the old row.
        tenant_cache.invalidate(agent.tenant_id)
        _publish_state_changed(agent, previous_state, now)


def agent_control_delivered(*, agent_id: UUID, tenant_id: int, version: int) -> None:
    """The agent was sent its control at ``version``: the receipt's "delivered" step."""
    now = timezone.now()
    changed = Agent.objects.filter(pk=agent_id, delivered_version__lt=version).update(
        delivered_version=version, delivered_at=now
    )
    if changed:
        hub.publish(tenant_id, "control.delivered", {"agent_id": agent_id, "version": version, "timestamp": now})


# --- what agents are told (under control) ------------------------------------------------


class StaleVersion(Exception):
    """The agent's version moved on since the caller read it (fencing)."""


def _locked(agent_id: UUID, expected_version: int | None) -> Agent:
    agent = Agent.objects.select_for_update().get(pk=agent_id)
    if expected_version is not None and agent.version != expected_version:
        raise StaleVersion(f"agent {agent_id} is at version {agent.version}, not {expected_version}")
    return agent


@dataclass(frozen=True)
class Pause:
    """How a pause holds: why, until when, and whether tasks in hand stop at once."""

    reason: str = ""
    until: datetime | None = None
    mode: str = PauseMode.AFTER_TASK


@transaction.atomic
def agent_desired_state_set(
    *,
    agent_id: UUID,
    state: DesiredState,
    actor: User | None,
    expected_version: int | None = None,
    pause: Pause | None = None,
) -> Agent:
    """Set what the agent must do, bump its version and push it to the agent after commit.

    The bare mechanism: the control service adds locks, idempotency, rules and audit. With
    ``expected_version``, a row that moved on since is left alone (``StaleVersion``).
    ``pause`` describes a pause; any other state clears it.
    """
    agent = _locked(agent_id, expected_version)
    desired_state_apply(agent=agent, state=state, actor=actor, pause=pause)
    return agent


DESIRED_FIELDS = (
    "desired_state",
    "desired_changed_at",
    "desired_changed_by_id",
    "pause_reason",
    "pause_until",
    "pause_mode",
    "stop_unconfirmed_at",
    "version",
    "updated_at",
)


def desired_state_apply(*, agent: Agent, state: DesiredState, actor: User | None, pause: Pause | None = None) -> None:
    """``agent_desired_state_set`` on a row the caller has locked (``SELECT … FOR UPDATE``)
    in its own transaction."""
    if agent.desired_state == state:
        return
    previous = agent.desired_state
    held = pause if state == DesiredState.PAUSED and pause is not None else Pause()
    agent.desired_state = state
    agent.desired_changed_at = timezone.now()
    agent.desired_changed_by = actor
    agent.pause_reason, agent.pause_until, agent.pause_mode = held.reason[:500], held.until, held.mode
    agent.stop_unconfirmed_at = None
    agent.version += 1
    agent.updated_at = agent.desired_changed_at
    sql.update_agent(agent, DESIRED_FIELDS)
    tenant_cache.invalidate(agent.tenant_id)
    _publish_control(
        agent,
        "desired_state",
        previous_desired_state=previous,
        actor=actor.get_username() if actor else "system",
        timestamp=agent.desired_changed_at,
    )


@transaction.atomic
def agent_quotas_set(
    *, agent_id: UUID, quotas: dict[str, dict[str, int]], expected_version: int | None = None
) -> Agent:
    """Replace the agent's quota limits, bump its version and push them after commit."""
    agent = _locked(agent_id, expected_version)
    quotas_apply(agent=agent, quotas=quotas)
    return agent


def quotas_apply(*, agent: Agent, quotas: dict[str, dict[str, int]]) -> None:
    """``agent_quotas_set`` on a row the caller has locked in its own transaction."""
    if agent.quotas != quotas:
        agent.quotas = quotas
        agent.version += 1
        agent.updated_at = timezone.now()
        sql.update_agent(agent, ("quotas", "version", "updated_at"))
        tenant_cache.invalidate(agent.tenant_id)
        _publish_control(agent, "quotas", quotas=quotas)
