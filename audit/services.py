"""Writing the audit trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry, Outcome


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: a user (from a page or with a personal token) or the system."""

    user: User | None
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    @property
    def label(self) -> str:
        return self.user.get_username() if self.user is not None else "system"


SYSTEM = Actor(user=None)


@dataclass(frozen=True)
class Entry:
    action: str
    resource_type: str
    resource_id: str
    outcome: Outcome
    reason: str = ""
    delta: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    idempotency_key: str = ""
    batch_id: UUID | None = None


AUDIT_COLUMNS = (
    "tenant_id",
    "occurred_at",
    "actor_id",
    "actor_label",
    "ip",
    "user_agent",
    "action",
    "resource_type",
    "resource_id",
    "reason",
    "delta",
    "outcome",
    "error_code",
    "idempotency_key",
    "request_id",
    "batch_id",
)
INSERT_SQL = (
    f"INSERT INTO {AuditEntry._meta.db_table} ({', '.join(AUDIT_COLUMNS)}) "  # noqa: S608 - constants only
    f"VALUES ({', '.join(['%s'] * len(AUDIT_COLUMNS))})"
)


def audit_record(*, tenant_id: int, actor: Actor, entry: Entry, at: datetime | None = None) -> None:
    """One row, in the caller's transaction (a change and its audit commit together). A
    plain statement: it is written on every control operation, and compiling the ORM's
    INSERT cost more than running it."""
    fields = {f.column: f for f in AuditEntry._meta.concrete_fields}
    values = (
        tenant_id,
        at or timezone.now(),
        actor.user.pk if actor.user is not None else None,
        actor.label,
        actor.ip,
        actor.user_agent[:300],
        entry.action,
        entry.resource_type,
        entry.resource_id[:64],
        entry.reason[:500],
        entry.delta,
        entry.outcome,
        entry.error_code,
        entry.idempotency_key[:255],
        actor.request_id[:64],
        entry.batch_id,
    )
    params = [fields[c].get_db_prep_save(v, connection) for c, v in zip(AUDIT_COLUMNS, values, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, params)
