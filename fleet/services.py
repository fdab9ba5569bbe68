"""Writes of the fleet domain: tokens, agent registration, heartbeats and ingest batches.

Every batch is validated whole before anything is written, and written in one
transaction, so a bad request stores nothing.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from costs.models import UsageRecord
from events.models import Event, Severity
from fleet import rollups
from fleet.models import Agent, ApiToken, DesiredState, MetricMinute, ObservedState, PauseMode
from fleet.quotas import quota_usage
from fleet.schemas import EventIn, HeartbeatIn, Metrics, MetricSampleIn, RegisterIn, UsageIn
from l10console import hub, runner, tenant_cache
from l10console.errors import ErrorCode, InterfaceError
from l10console.lib.timeutil import floor_minute
from l10console.lib.tokens import hash_token, looks_like_token, new_token
from l10console.tenancy.models import Tenant

log = logging.getLogger(__name__)

# last_used_at is refreshed at most this often, so a busy token does not write per request.
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)
# Silent for this many heartbeat intervals: unresponsive.
UNRESPONSIVE_AFTER_INTERVALS = 3


# --- tokens ---------------------------------------------------------------------------


def token_create(*, tenant: Tenant, name: str, created_by: User | None) -> tuple[ApiToken, str]:
    """Create a token and return it with its plain text, which is shown once and never stored."""
    name = name.strip()
    if not name:
        raise ValueError("Give the token a name, e.g. the fleet or host that will use it.")
    made = new_token()
    token = ApiToken.objects.create(
        tenant=tenant, name=name[:100], prefix=made.prefix, token_hash=made.digest, created_by=created_by
    )
    return token, made.plain


def token_revoke(*, token: ApiToken) -> bool:
    """Revoke a token; False if it already was."""
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return bool(changed)


def token_authenticate(plain: str) -> ApiToken:
    """The active token for this plain text, with its tenant; InterfaceError otherwise."""
    if not looks_like_token(plain):
        raise InterfaceError(ErrorCode.TOKEN_INVALID)
    digest = hash_token(plain)
    if connection.vendor == "postgresql":
        token = _token_by_hash_postgres(digest)
    else:
        token = ApiToken.objects.select_related("tenant").filter(token_hash=digest).first()
    if token is None:
        raise InterfaceError(ErrorCode.TOKEN_INVALID)
    if token.revoked_at is not None:
        raise InterfaceError(ErrorCode.TOKEN_REVOKED)
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@functools.cache
def _token_statement() -> str:
    token_table, tenant_table = ApiToken._meta.db_table, Tenant._meta.db_table
    return (
        f"SELECT k.id, k.revoked_at, k.last_used_at, t.id, t.slug, t.name, t.created_at "  # noqa: S608 - constants only
        f"FROM {token_table} AS k JOIN {tenant_table} AS t ON t.id = k.tenant_id WHERE k.token_hash = %s"
    )


def _token_by_hash_postgres(digest: str) -> ApiToken | None:
    """The token and its tenant in one plain statement: every ingest request authenticates,
    and compiling the ORM query cost more than running it."""
    with connection.cursor() as cursor:
        cursor.execute(_token_statement(), [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token_id, revoked_at, last_used_at, tenant_id, slug, name, created_at = row
    tenant = Tenant(id=tenant_id, slug=slug, name=name, created_at=created_at)
    return ApiToken(id=token_id, tenant=tenant, token_hash=digest, revoked_at=revoked_at, last_used_at=last_used_at)


# --- agents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentControl:
    """What an agent must obey: returned on register, on every heartbeat and pushed over
    the agent socket. ``usage`` is what the agent has used in each limited period."""

    agent_id: str
    external_id: str
    desired_state: str
    version: int
    quotas: dict[str, dict[str, int]]
    usage: dict[str, dict[str, int]]
    heartbeat_interval: int
    pause_mode: str | None = None  # while paused: "now" or "after_task"
    pause_until: str | None = None  # while paused: when it resumes by itself

    @classmethod
    def of(cls, agent: Agent, *, now: datetime | None = None) -> AgentControl:
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
        )

    def as_message(self) -> dict[str, Any]:
        return {"type": "control", **asdict(self)}


@transaction.atomic
def agent_register(*, tenant: Tenant, data: RegisterIn) -> tuple[Agent, bool]:
    """Create the agent, or update its name and labels; returns (agent, created)."""
    agent, created = Agent.objects.get_or_create(
        tenant=tenant,
        external_id=data.external_id,
        defaults={"name": data.name or data.external_id, "labels": data.labels or {}},
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
    if data.name is not None and data.name != agent.name:
        agent.name = data.name
        changed.append("name")
    if data.labels is not None and data.labels != agent.labels:
        agent.labels = data.labels
        changed.append("labels")
    if changed:
        agent.save(update_fields=[*changed, "updated_at"])
    return agent, False


def _unknown_agent(external_id: str) -> InterfaceError:
    return InterfaceError(
        ErrorCode.INGEST_UNKNOWN_AGENT, f"No agent {external_id!r} in this tenant; register it first."
    )


def _agent_by_external_id(tenant: Tenant, external_id: str) -> Agent:
    agent = Agent.objects.filter(tenant=tenant, external_id=external_id).first()
    if agent is None:
        raise _unknown_agent(external_id)
    return agent


def agent_heartbeat(*, tenant: Tenant, external_id: str, data: HeartbeatIn) -> Agent:
    """Record the agent's observed state and metrics. Always accepted, also from a stopped agent.

    The returned agent carries what the answer needs (id, external id, desired state,
    version, quotas, observed state); on PostgreSQL it is not a full row.
    """
    now = timezone.now()
    if connection.vendor == "postgresql":
        agent, previous_state = _heartbeat_postgres(tenant, external_id, data, now)
    else:
        agent, previous_state = _heartbeat_portable(tenant, external_id, data, now)
    if previous_state != data.state:
        tenant_cache.invalidate(tenant.pk)
        _publish_state_changed(agent, previous_state, now)
    hub.publish(tenant.pk, "agent.heartbeat", _heartbeat_event(agent, data, now))
    return agent


def _heartbeat_event(agent: Agent, data: HeartbeatIn, now: datetime) -> dict[str, Any]:
    event: dict[str, Any] = {"agent_id": agent.pk, "external_id": agent.external_id, "state": data.state}
    if data.metrics is not None:
        event["metrics"] = data.metrics.model_dump()
    event["timestamp"] = data.at or now
    return event


def _publish_state_changed(agent: Agent, previous_state: str, now: datetime) -> None:
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


# The agent's columns a heartbeat sets besides its observed state: always, and with metrics.
HEARTBEAT_COLUMNS = ("last_heartbeat_at", "updated_at")
HEARTBEAT_METRIC_COLUMNS = (
    "cpu_percent",
    "memory_mb",
    "latency_p95_ms",
    "tokens_per_min",
    "requests_per_min",
    "errors_per_min",
    "metrics_at",
)


def _heartbeat_fields(data: HeartbeatIn, now: datetime) -> dict[str, Any]:
    """Values for ``HEARTBEAT_COLUMNS`` and, with metrics, ``HEARTBEAT_METRIC_COLUMNS``."""
    fields: dict[str, Any] = {"last_heartbeat_at": now, "updated_at": now}
    metrics = data.metrics
    if metrics is not None:
        interval_min = settings.L10.agent_heartbeat_interval / 60
        fields.update(
            cpu_percent=metrics.cpu_percent,
            memory_mb=metrics.memory_mb,
            latency_p95_ms=metrics.latency_p95_ms,
            tokens_per_min=metrics.tokens / interval_min,
            requests_per_min=metrics.requests / interval_min,
            errors_per_min=metrics.errors / interval_min,
            metrics_at=data.at or now,
        )
    return fields


@transaction.atomic
def _heartbeat_portable(tenant: Tenant, external_id: str, data: HeartbeatIn, now: datetime) -> tuple[Agent, str]:
    """Any database: read the agent, merge the sample, update the row."""
    agent = _agent_by_external_id(tenant, external_id)
    previous_state = agent.observed_state
    fields = _heartbeat_fields(data, now)
    if previous_state != data.state:
        fields.update(observed_state=data.state, observed_changed_at=now)
    if agent.delivered_version < agent.version:  # the answer carries the control
        fields.update(delivered_version=agent.version, delivered_at=now)
    if data.metrics is not None:
        _merge_minutes([(agent.pk, tenant.pk, data.at or now, data.metrics)])
    Agent.objects.filter(pk=agent.pk).update(**fields)
    for name, value in fields.items():
        setattr(agent, name, value)
    return agent, previous_state


@functools.cache
def _heartbeat_statement(with_metrics: bool) -> str:
    """One statement: update the agent (keeping its previous observed state for the answer)
    and, with metrics, merge the sample into its minute row. Each heartbeat runs in one
    round trip and one implicit transaction, with no SQL compiled per request."""
    agent_table = Agent._meta.db_table
    columns = HEARTBEAT_COLUMNS + (HEARTBEAT_METRIC_COLUMNS if with_metrics else ())
    assignments = ", ".join(f"{c} = %({c})s" for c in columns)
    statement = (
        f"WITH previous AS (SELECT id, observed_state FROM {agent_table} "  # noqa: S608 - constants only
        "WHERE tenant_id = %(tenant_id)s AND external_id = %(external_id)s), "
        f"agent AS (UPDATE {agent_table} AS a SET {assignments}, observed_state = %(state)s, "
        "observed_changed_at = CASE WHEN a.observed_state = %(state)s THEN a.observed_changed_at ELSE %(now)s END, "
        # The answer carries the control: delivered, if this version was not yet.
        "delivered_at = CASE WHEN a.delivered_version < a.version THEN %(now)s ELSE a.delivered_at END, "
        "delivered_version = a.version "
        "FROM previous WHERE a.id = previous.id "
        "RETURNING a.id, a.desired_state, a.version, a.quotas, a.pause_mode, a.pause_until, previous.observed_state)"
    )
    if with_metrics:
        statement += (
            f", minute AS (INSERT INTO {MetricMinute._meta.db_table} AS t ({MERGE_COLUMNS}) "  # noqa: S608
            "SELECT agent.id, %(tenant_id)s, %(minute)s, 1, %(cpu)s, %(cpu)s, %(mem)s, %(mem)s, %(tokens)s, "
            "%(requests)s, %(errors)s, %(p95)s FROM agent "
            f"ON CONFLICT (agent_id, minute) DO UPDATE SET {MERGE_UPDATE})"
        )
    return f"{statement} SELECT id, desired_state, version, quotas, pause_mode, pause_until, observed_state FROM agent"  # noqa: S608


def _heartbeat_postgres(tenant: Tenant, external_id: str, data: HeartbeatIn, now: datetime) -> tuple[Agent, str]:
    params = _heartbeat_fields(data, now)
    params.update(tenant_id=tenant.pk, external_id=external_id, state=data.state, now=now)
    metrics = data.metrics
    if metrics is not None:
        cpu = metrics.cpu_percent or 0.0
        params.update(
            minute=floor_minute(data.at or now),
            cpu=cpu,
            mem=metrics.memory_mb or 0.0,
            tokens=metrics.tokens,
            requests=metrics.requests,
            errors=metrics.errors,
            p95=metrics.latency_p95_ms or 0.0,
        )
    with connection.cursor() as cursor:
        cursor.execute(_heartbeat_statement(metrics is not None), params)
        row = cursor.fetchone()
    if row is None:
        raise _unknown_agent(external_id)
    agent_id, desired_state, version, quotas, pause_mode, pause_until, previous_state = row
    # Django leaves jsonb as text for JSONField to decode; a raw cursor gets that text.
    quotas = json.loads(quotas) if isinstance(quotas, str) else quotas
    agent = Agent(
        id=agent_id,
        tenant=tenant,
        external_id=external_id,
        desired_state=desired_state,
        version=version,
        quotas=quotas,
        pause_mode=pause_mode,
        pause_until=pause_until,
        observed_state=data.state,
    )
    return agent, previous_state


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


DESIRED_COLUMNS = (
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


@functools.cache
def _update_statement(columns: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{c} = %s" for c in columns)
    return f"UPDATE {Agent._meta.db_table} SET {assignments} WHERE id = %s"  # noqa: S608 - constants only


def _update_columns(agent: Agent, columns: tuple[str, ...]) -> None:
    """Write these columns of the agent by one plain UPDATE: control writes one on every
    operation, and compiling the ORM's cost more than running it."""
    fields = {f.column: f for f in Agent._meta.concrete_fields}
    params = [fields[c].get_db_prep_save(getattr(agent, fields[c].attname), connection) for c in columns]
    params.append(fields["id"].get_db_prep_save(agent.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(_update_statement(columns), params)


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
    _update_columns(agent, DESIRED_COLUMNS)
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
        _update_columns(agent, ("quotas", "version", "updated_at"))
        tenant_cache.invalidate(agent.tenant_id)
        _publish_control(agent, "quotas", quotas=quotas)


def agent_control_delivered(*, agent_id: UUID, tenant_id: int, version: int) -> None:
    """The agent was sent its control at ``version``: the receipt's "delivered" step."""
    now = timezone.now()
    changed = Agent.objects.filter(pk=agent_id, delivered_version__lt=version).update(
        delivered_version=version, delivered_at=now
    )
    if changed:
        hub.publish(tenant_id, "control.delivered", {"agent_id": agent_id, "version": version, "timestamp": now})


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


def agents_mark_unresponsive(*, now: datetime | None = None) -> list[UUID]:
    """Mark agents silent for three heartbeat intervals ``unresponsive``; returns their ids.

    A confirmed-stopped agent is expected to go quiet and is left alone. Each marking is
    recorded as an ``agent.unresponsive`` event.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.L10.agent_heartbeat_interval * UNRESPONSIVE_AFTER_INTERVALS)
    quiet = ObservedState.UNRESPONSIVE, ObservedState.STOPPED
    with transaction.atomic():
        silent = list(
            Agent.objects.select_for_update(skip_locked=True)
            .filter(last_heartbeat_at__lt=cutoff)
            .exclude(observed_state__in=quiet)
            .values_list("pk", "tenant_id", "observed_state", "last_heartbeat_at", "external_id", "desired_state")
        )
        never_seen = list(
            Agent.objects.select_for_update(skip_locked=True)
            .filter(last_heartbeat_at__isnull=True, registered_at__lt=cutoff)
            .exclude(observed_state__in=quiet)
            .values_list("pk", "tenant_id", "observed_state", "last_heartbeat_at", "external_id", "desired_state")
        )
        rows = silent + never_seen
        if not rows:
            return []
        ids = [row[0] for row in rows]
        Agent.objects.filter(pk__in=ids).update(
            observed_state=ObservedState.UNRESPONSIVE, observed_changed_at=now, updated_at=now
        )
        Event.objects.bulk_create(
            Event(
                tenant_id=tenant_id,
                agent_id=pk,
                type="agent.unresponsive",
                severity=Severity.WARNING,
                message=f"No heartbeat since {last.isoformat() if last else 'registration'}; was {previous}.",
                data={"previous_state": previous, "last_heartbeat_at": last.isoformat() if last else None},
                occurred_at=now,
            )
            for pk, tenant_id, previous, last, _, _ in rows
        )
        for tenant_id in {row[1] for row in rows}:
            tenant_cache.invalidate(tenant_id)
            hub.publish_many(
                tenant_id,
                "agent.state.changed",
                (
                    {
                        "agent_id": pk,
                        "external_id": external_id,
                        "state": ObservedState.UNRESPONSIVE,
                        "previous_state": previous,
                        "desired_state": desired,
                        "timestamp": now,
                    }
                    for pk, tenant, previous, _, external_id, desired in rows
                    if tenant == tenant_id
                ),
            )
    log.info("marked %d agent(s) unresponsive", len(ids))
    return ids


def agents_flag_unconfirmed_stops(*, now: datetime | None = None) -> list[UUID]:
    """Flag emergency stops the agent has not confirmed within three heartbeat intervals:
    each once, with a critical ``agent.stop_unconfirmed`` event; returns the agents' ids.

    The claim is a conditional update (``stop_unconfirmed_at IS NULL``), so two runs at
    once flag an agent once.
    """
    now = now or timezone.now()
    deadline = now - timedelta(seconds=settings.L10.agent_heartbeat_interval * UNRESPONSIVE_AFTER_INTERVALS)
    flagged: list[UUID] = []
    with transaction.atomic():
        overdue = list(
            Agent.objects.select_for_update(skip_locked=True)
            .filter(
                desired_state=DesiredState.STOPPED, desired_changed_at__lt=deadline, stop_unconfirmed_at__isnull=True
            )
            .exclude(observed_state=ObservedState.STOPPED)
            .values_list("pk", "tenant_id", "external_id", "observed_state", "desired_changed_at")
        )
        for pk, tenant_id, external_id, observed, asked in overdue:
            if not Agent.objects.filter(pk=pk, stop_unconfirmed_at__isnull=True).update(stop_unconfirmed_at=now):
                continue
            flagged.append(pk)
            Event.objects.create(
                tenant_id=tenant_id,
                agent_id=pk,
                type="agent.stop_unconfirmed",
                severity=Severity.CRITICAL,
                message=f"The emergency stop is not confirmed; the agent reports {observed}.",
                data={"observed_state": observed, "requested_at": asked.isoformat() if asked else None},
                occurred_at=now,
            )
            tenant_cache.invalidate(tenant_id)
            hub.publish(
                tenant_id,
                "alert.triggered",
                {"agent_id": pk, "external_id": external_id, "kind": "agent.stop_unconfirmed", "timestamp": now},
            )
    if flagged:
        log.warning("%d emergency stop(s) not confirmed in time", len(flagged))
    return flagged


# --- batches --------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRef:
    pk: UUID
    desired_state: str


def _resolve_agents(tenant: Tenant, external_ids: Iterable[str]) -> dict[str, AgentRef]:
    """external_id → the agent's id and desired state; all must exist, or nothing is stored."""
    wanted = set(external_ids)
    rows = Agent.objects.filter(tenant=tenant, external_id__in=wanted).values_list("external_id", "pk", "desired_state")
    agents = {external_id: AgentRef(pk, desired) for external_id, pk, desired in rows}
    missing = sorted(wanted - agents.keys())
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise InterfaceError(
            ErrorCode.INGEST_UNKNOWN_AGENT,
            f"{len(missing)} unknown external_id(s) in this tenant: {shown}. Register them first; nothing was stored.",
            details={"unknown_external_ids": missing[:100]},
        )
    return agents


MinuteKey = tuple[UUID, datetime]
MERGE_COLUMNS = (
    "agent_id, tenant_id, minute, samples, cpu_sum, cpu_max, memory_sum, memory_max, tokens, requests, errors, "
    "latency_p95_ms"
)
MERGE_ROWS_PER_STATEMENT = 500


def _larger(column: str) -> str:
    # GREATEST on PostgreSQL, MAX(a, b) on SQLite: CASE works on both.
    return f"CASE WHEN excluded.{column} > t.{column} THEN excluded.{column} ELSE t.{column} END"


MERGE_UPDATE = ", ".join(
    [f"{c} = t.{c} + excluded.{c}" for c in ("samples", "cpu_sum", "memory_sum", "tokens", "requests", "errors")]
    + [f"{c} = {_larger(c)}" for c in ("cpu_max", "memory_max", "latency_p95_ms")]
)


def _merge_minutes(samples: Sequence[tuple[UUID, int, datetime, Metrics]]) -> int:
    """Fold samples into per-minute rows: sums add, maxima keep the larger; returns rows written.

    1. Aggregate in memory first, since one INSERT may not touch the same row twice.
    2. Upsert the aggregates in chunks with ``ON CONFLICT (agent_id, minute) DO UPDATE``.
    """
    merged: dict[MinuteKey, list[Any]] = {}
    for agent_id, tenant_id, at, m in samples:
        key = (agent_id, floor_minute(at))
        cpu = m.cpu_percent or 0.0
        mem = m.memory_mb or 0.0
        p95 = m.latency_p95_ms or 0.0
        row = merged.get(key)
        if row is None:
            merged[key] = [tenant_id, 1, cpu, cpu, mem, mem, m.tokens, m.requests, m.errors, p95]
            continue
        row[1] += 1
        row[2] += cpu
        row[3] = max(row[3], cpu)
        row[4] += mem
        row[5] = max(row[5], mem)
        row[6] += m.tokens
        row[7] += m.requests
        row[8] += m.errors
        row[9] = max(row[9], p95)

    rows = [(agent_id, minute, *values) for (agent_id, minute), values in merged.items()]
    if connection.vendor == "postgresql":
        _upsert_minutes_postgres(rows)
    else:
        _upsert_minutes_portable(rows)
    return len(rows)


# One short statement whatever the batch size: psycopg prepares it once per connection,
# where a long VALUES list is parsed anew each time.
UPSERT_MINUTES_POSTGRES = (
    f"INSERT INTO {MetricMinute._meta.db_table} AS t ({MERGE_COLUMNS}) "  # noqa: S608 - constants only
    "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::timestamptz[], %s::integer[], %s::float8[], "
    "%s::float8[], %s::float8[], %s::float8[], %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[]) "
    f"ON CONFLICT (agent_id, minute) DO UPDATE SET {MERGE_UPDATE}"
)


def _upsert_minutes_postgres(rows: list[tuple[Any, ...]]) -> None:
    columns = [list(column) for column in zip(*rows, strict=True)]
    # Row layout is (agent, minute, tenant, ...) but the columns are (agent, tenant, minute, ...).
    columns[1], columns[2] = columns[2], columns[1]
    with connection.cursor() as cursor:
        cursor.execute(UPSERT_MINUTES_POSTGRES, columns)


def _upsert_minutes_portable(rows: list[tuple[Any, ...]]) -> None:
    pk_field = Agent._meta.get_field("id")
    table = MetricMinute._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(rows), MERGE_ROWS_PER_STATEMENT):
            chunk = rows[start : start + MERGE_ROWS_PER_STATEMENT]
            params: list[Any] = []
            for agent_id, minute, tenant_id, *values in chunk:
                params.append(pk_field.get_db_prep_value(agent_id, connection))
                params.append(tenant_id)
                params.append(connection.ops.adapt_datetimefield_value(minute))
                params.extend(values)
            values_sql = ", ".join(["(" + ", ".join(["%s"] * 12) + ")"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} AS t ({MERGE_COLUMNS}) VALUES {values_sql} "  # noqa: S608 - constants only
                f"ON CONFLICT (agent_id, minute) DO UPDATE SET {MERGE_UPDATE}",
                params,
            )


@transaction.atomic
def metrics_record(*, tenant: Tenant, samples: Sequence[MetricSampleIn]) -> int:
    agents = _resolve_agents(tenant, (s.external_id for s in samples))
    written = _merge_minutes([(agents[s.external_id].pk, tenant.pk, s.at, s) for s in samples])
    # Samples older than the routine rollup's look-back (an agent catching up after an
    # outage) get their range rolled up again once this commits.
    oldest = min(s.at for s in samples)
    if oldest < timezone.now() - rollups.LOOKBACK:
        runner.enqueue("fleet.tasks.rollup_range", oldest.isoformat(), timezone.now().isoformat())
    return written


@transaction.atomic
def events_record(*, tenant: Tenant, events: Sequence[EventIn]) -> tuple[int, int]:
    """Store events; returns (stored, duplicates skipped by ``id``)."""
    agents = _resolve_agents(tenant, (e.external_id for e in events if e.external_id))
    rows = [
        Event(
            tenant=tenant,
            agent_id=agents[e.external_id].pk if e.external_id else None,
            uid=e.id,
            type=e.type,
            severity=e.severity,
            message=e.message,
            data=e.data,
            occurred_at=e.at,
        )
        for e in events
    ]
    stored, duplicates = _insert_deduplicated(Event, tenant, rows)
    inserted = {id(row) for row in stored}
    hub.publish_many(
        tenant.pk,
        "task.completed",
        (
            {
                "agent_id": row.agent_id,
                "external_id": event.external_id,
                "event_id": row.uid,
                "severity": row.severity,
                "data": row.data,
                "timestamp": row.occurred_at,
            }
            for row, event in zip(rows, events, strict=True)
            if row.type == "task.completed" and id(row) in inserted
        ),
    )
    return len(stored), duplicates


@transaction.atomic
def usage_record(*, tenant: Tenant, records: Sequence[UsageIn]) -> tuple[int, int]:
    """Store usage; flag what a stopped agent reported. Returns (stored, duplicates)."""
    agents = _resolve_agents(tenant, (r.external_id for r in records))
    rows = []
    for r in records:
        agent = agents[r.external_id]
        stopped = agent.desired_state == DesiredState.STOPPED
        rows.append(
            UsageRecord(
                tenant=tenant,
                agent_id=agent.pk,
                uid=r.id,
                model=r.model,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                api_calls=r.api_calls,
                occurred_at=r.at,
                flagged=stopped,
                flag_reason="reported after an emergency stop" if stopped else "",
            )
        )
    stored, duplicates = _insert_deduplicated(UsageRecord, tenant, rows)
    return len(stored), duplicates


def _insert_deduplicated(
    model: type[Event] | type[UsageRecord], tenant: Tenant, rows: list[Any]
) -> tuple[list[Any], int]:
    """Insert rows, skipping those whose sender-given ``uid`` is already stored; returns
    (the rows inserted, the number skipped)."""
    uids = {row.uid for row in rows if row.uid is not None}
    seen: set[UUID] = set()
    if uids:
        stored = model.objects.filter(tenant=tenant, uid__in=uids).values_list("uid", flat=True)
        seen = {uid for uid in stored if uid is not None}
    fresh, duplicates = [], 0
    for row in rows:
        if row.uid is not None and row.uid in seen:
            duplicates += 1
            continue
        if row.uid is not None:
            seen.add(row.uid)
        fresh.append(row)
    # ignore_conflicts: a concurrent retry of the same batch must not fail the request.
    model.objects.bulk_create(fresh, batch_size=500, ignore_conflicts=True)
    return fresh, duplicates
