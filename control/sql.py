"""Plain statements of a control operation, each with its portable twin (core/sql.py says
how, docs/architecture.md why). A pause runs every one of them; as ORM queries their
compilation cost more than running them (docs/performance.md, "Control").

- ``target``: the agent, its tenant and the caller's role there, in one read.
- ``lock``: the agent's row locked for the transaction, with what a decision reads.
- ``stored_answer`` and ``claim``: the idempotency record of a key.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction

from control.models import IdempotencyRecord
from core.errors import ErrorCode, InterfaceError
from core.sql import fetch_one, load, plain, table
from fleet.models import Agent
from tenancy.models import Membership, Tenant

# What control reads of an agent before it locks the row.
TARGET_FIELDS = ("id", "tenant_id", "external_id", "name", "version", "desired_state")
TENANT_FIELDS = ("id", "slug", "name")
TARGET_SQL = (
    f"SELECT {', '.join(f'a.{f}' for f in TARGET_FIELDS)}, t.id, t.slug, t.name, "  # noqa: S608 - constants only
    f"(SELECT m.role FROM {table(Membership)} AS m WHERE m.user_id = %s AND m.tenant_id = a.tenant_id) "
    f"FROM {table(Agent)} AS a JOIN {table(Tenant)} AS t ON t.id = a.tenant_id WHERE a.id = %s"
)


def _target_portable(agent_id: UUID, user_id: int | None) -> tuple[Agent, str | None] | None:
    fields = ("id", "tenant", "external_id", "name", "version", "desired_state", "tenant__slug", "tenant__name")
    found = Agent.objects.select_related("tenant").only(*fields).filter(pk=agent_id).first()
    if found is None:
        return None
    if user_id is None:  # the system
        return found, None
    roles = Membership.objects.filter(user_id=user_id, tenant_id=found.tenant_id).order_by()
    return found, roles.values_list("role", flat=True).first()


@plain(portable=_target_portable)
def target(agent_id: UUID, user_id: int | None) -> tuple[Agent, str | None] | None:
    """The agent with its tenant, and the role of user ``user_id`` in that tenant (None
    when not a member, or for the system); None when there is no such agent."""
    row = fetch_one(TARGET_SQL, [user_id, agent_id])
    if row is None:
        return None
    width = len(TARGET_FIELDS)
    agent = load(Agent, TARGET_FIELDS, row[:width])
    agent.tenant = load(Tenant, TENANT_FIELDS, row[width : width + 3])
    return agent, row[-1]


LOCK_FIELDS = ("desired_state", "version", "quotas")
LOCK_SQL = f"SELECT {', '.join(LOCK_FIELDS)} FROM {table(Agent)} WHERE id = %s FOR UPDATE"  # noqa: S608


def _lock_portable(agent: Agent) -> Agent:
    locked = Agent.objects.select_for_update().filter(pk=agent.pk).values_list(*LOCK_FIELDS).first()
    if locked is None:
        raise InterfaceError(ErrorCode.AGENT_NOT_FOUND, "The agent was removed meanwhile.")
    agent.desired_state, agent.version, agent.quotas = locked
    return agent


@plain(portable=_lock_portable)
def lock(agent: Agent) -> Agent:
    """Lock the agent's row until the transaction ends and refresh what a decision reads
    (its desired state, version and quotas) on ``agent``; the rest as read before."""
    row = fetch_one(LOCK_SQL, [agent.pk])
    if row is None:
        raise InterfaceError(ErrorCode.AGENT_NOT_FOUND, "The agent was removed meanwhile.")
    locked = load(Agent, LOCK_FIELDS, row)
    agent.desired_state, agent.version, agent.quotas = locked.desired_state, locked.version, locked.quotas
    return agent


RECORD_FIELDS = (
    "id",
    "tenant_id",
    "caller",
    "key",
    "fingerprint",
    "status_code",
    "response",
    "created_at",
    "expires_at",
)
STORED_SQL = (
    f"SELECT {', '.join(RECORD_FIELDS)} FROM {table(IdempotencyRecord)} "  # noqa: S608 - constants only
    "WHERE tenant_id = %s AND caller = %s AND key = %s"
)


def _stored_answer_portable(tenant_id: int, caller: str, key: str) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.filter(tenant_id=tenant_id, caller=caller, key=key).first()


@plain(portable=_stored_answer_portable)
def stored_answer(tenant_id: int, caller: str, key: str) -> IdempotencyRecord | None:
    """The idempotency record of a caller's key (expired or not: the caller decides)."""
    row = fetch_one(STORED_SQL, [tenant_id, caller, key])
    return None if row is None else load(IdempotencyRecord, RECORD_FIELDS, row)


# A record past its expiry counts as absent: a new request with its key replaces it.
CLAIM_SQL = (
    f"INSERT INTO {table(IdempotencyRecord)} AS r "  # noqa: S608 - constants only
    "(tenant_id, caller, key, fingerprint, status_code, response, created_at, expires_at) "
    "VALUES (%s, %s, %s, %s, 200, %s, %s, %s) ON CONFLICT (tenant_id, caller, key) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, status_code = excluded.status_code, response = excluded.response, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at "
    "WHERE r.expires_at <= excluded.created_at RETURNING id"
)


def _claim_portable(
    tenant_id: int, caller: str, key: str, fingerprint: str, answer: dict[str, Any], now: datetime, expires: datetime
) -> bool:
    IdempotencyRecord.objects.filter(tenant_id=tenant_id, caller=caller, key=key, expires_at__lte=now).delete()
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                tenant_id=tenant_id, caller=caller, key=key, fingerprint=fingerprint, status_code=200,
                response=answer, created_at=now, expires_at=expires,
            )  # fmt: skip
    except IntegrityError:
        return False
    return True


@plain(portable=_claim_portable)
def claim(
    tenant_id: int, caller: str, key: str, fingerprint: str, answer: dict[str, Any], now: datetime, expires: datetime
) -> bool:
    """Store the key with its answer, in the caller's transaction; False when a live
    record of the key exists (a concurrent request with the same key waits on the unique
    index until the other commits or rolls back, then finds it taken)."""
    return fetch_one(CLAIM_SQL, [tenant_id, caller, key, fingerprint, json.dumps(answer), now, expires]) is not None
