"""Writing the audit trail."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils import timezone

from audit import sql
from audit.models import Outcome
from core.errors import ErrorCode, InterfaceError
from core.http import client_ip
from core.inputs import printable, text_problem
from tenancy.usernames import normalize_username


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: a user (from a page or with a personal token) or the system."""

    user: User | None
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""
    name: str = ""  # who acts without an account: "anonymous" for a failed sign-in; else the system

    @property
    def label(self) -> str:
        return self.user.get_username() if self.user is not None else (self.name or "system")


SYSTEM = Actor(user=None)


def actor_named(who: str | User | None, *, ip: str | None = None, user_agent: str = "") -> Actor:
    """The actor the Python API names: an account, an active user's name, or the system
    (None or "system"); ``InterfaceError`` E10001 for a name no active user has."""
    if isinstance(who, User):
        return Actor(user=who, ip=ip, user_agent=user_agent)
    if who is None or str(who).strip() == "system":
        return Actor(user=None, ip=ip, user_agent=user_agent)
    name = normalize_username(str(who)[:150])
    found = None if text_problem(name) else User.objects.filter(username=name, is_active=True).first()
    if found is None:
        raise InterfaceError(ErrorCode.AUTH_REQUIRED, f"No active user {printable(str(who)[:150])!r}.")
    return Actor(user=found, ip=ip, user_agent=user_agent)


def request_actor(request: HttpRequest, user: User | None = None) -> Actor:
    """Who acts in ``request`` and from where: its signed-in user (or ``user``, for a
    token's owner), address, user agent, and its ``X-Request-ID`` or a new id."""
    chosen = user if user is not None else request.user
    return Actor(
        user=chosen if isinstance(chosen, User) else None,
        ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
        request_id=request.headers.get("X-Request-ID", "")[:64] or secrets.token_hex(8),
    )


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


def audit_record(*, tenant_id: int | None, actor: Actor, entry: Entry, at: datetime | None = None) -> int:
    """One row, in the caller's transaction (a change and its audit commit together); its id."""
    return sql.insert(
        {
            "tenant_id": tenant_id,
            "occurred_at": at or timezone.now(),
            "actor_id": actor.user.pk if actor.user is not None else None,
            "actor_label": printable(actor.label),
            "ip": actor.ip,
            "user_agent": printable(actor.user_agent[:300]),
            "action": entry.action,
            "resource_type": entry.resource_type,
            # A refused attempt is recorded with what it sent, made storable (core/inputs.py).
            "resource_id": printable(entry.resource_id[:64]),
            "reason": printable(entry.reason[:500]),
            "delta": entry.delta,
            "outcome": entry.outcome,
            "error_code": entry.error_code,
            "idempotency_key": printable(entry.idempotency_key[:255]),
            "request_id": printable(actor.request_id[:64]),
            "batch_id": entry.batch_id,
        }
    )
