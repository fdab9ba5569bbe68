"""The audit trail in the Python API: ``AuditService`` (``from l10console.services import
AuditService``) and ``AuditQuery`` (``from l10console.models import AuditQuery``), as
docs/python-api.md shows them. The same services and checks as the pages: an entry is
written by ``audit.services.audit_record``, a query read by ``audit.selectors``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import transaction

from audit import selectors
from audit.models import AuditEntry, Outcome
from audit.services import Entry, actor_named, audit_record
from core.errors import ErrorCode, InterfaceError
from core.inputs import json_problem, text_problem
from core.listing import bounded_total, keyset_page, offset_past_end, refuse
from tenancy.selectors import tenant_by_ref

ACTION = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
RESOURCE_TYPE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
MAX_DELTA = 16_384  # characters of the change, as JSON


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the trail as the Python API gives it."""

    id: int
    timestamp: datetime
    tenant_id: int | None  # None: the platform's own trail
    actor: str
    actor_ip: str | None
    user_agent: str
    action: str
    resource_type: str
    resource_id: str
    reason: str
    change_delta: dict[str, Any]
    outcome: str
    error_code: str
    request_id: str
    idempotency_key: str
    batch_id: UUID | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditRecord:
        return cls(
            id=entry.pk, timestamp=entry.occurred_at, tenant_id=entry.tenant_id, actor=entry.actor_label,
            actor_ip=entry.ip, user_agent=entry.user_agent, action=entry.action, resource_type=entry.resource_type,
            resource_id=entry.resource_id, reason=entry.reason, change_delta=entry.delta, outcome=entry.outcome,
            error_code=entry.error_code, request_id=entry.request_id, idempotency_key=entry.idempotency_key,
            batch_id=entry.batch_id,
        )  # fmt: skip


@dataclass(frozen=True)
class AuditQuery:
    """Which entries to read: every field optional; a tenant's (by slug or id) or, with
    none named, every tenant's. ``cursor`` is the ``next_cursor`` of the page before."""

    tenant_id: str | int | None = None
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in "*"
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: str | None = None
    start_time: datetime | str | None = None
    end_time: datetime | str | None = None
    limit: int = 100
    offset: int = 0
    cursor: str | None = None


@dataclass(frozen=True)
class AuditResponse:
    entries: list[AuditRecord]
    total: int
    total_is_estimate: bool
    next_cursor: str | None


class AuditLogger(Protocol):
    """A second place each entry written through ``log_action`` goes to once committed (a
    SIEM, a log shipper); the console's own trail is always written."""

    def log(self, record: AuditRecord) -> None: ...


def _tenant(ref: str | int) -> int:
    tenant = tenant_by_ref(ref)
    if tenant is None:
        raise InterfaceError(ErrorCode.TENANT_NOT_FOUND)
    return int(tenant.pk)


def _bad(field: str, problem: str) -> InterfaceError:
    return refuse(ErrorCode.AUDIT_INVALID_ENTRY, field, f"“{field}” {problem}.")


def _entry(
    action: str, resource_type: str, resource_id: str, reason: str, change_delta: Any, outcome: str
) -> Entry:  # fmt: skip
    if not ACTION.fullmatch(action):
        raise _bad("action", "is 1-64 of a-z, 0-9 and _ . : - starting with a letter, e.g. agent.pause")
    if not RESOURCE_TYPE.fullmatch(resource_type):
        raise _bad("resource_type", "is 1-32 of a-z, 0-9 and _ . - starting with a letter, e.g. agent")
    problem = text_problem(resource_id) or (None if 0 < len(resource_id) <= 64 else "is 1-64 characters")
    if problem:
        raise _bad("resource_id", problem)
    problem = text_problem(reason, multiline=True) or (None if len(reason) <= 500 else "is at most 500 characters")
    if problem:
        raise _bad("reason", problem)
    if not isinstance(change_delta, dict):
        raise _bad("change_delta", "is an object of what changed, e.g. {'state': {'from': 'running', 'to': 'paused'}}")
    problem = json_problem(change_delta) or (None if len(repr(change_delta)) <= MAX_DELTA else "is too large")
    if problem:
        raise _bad("change_delta", problem)
    if outcome not in Outcome.values:
        raise _bad("outcome", f"is one of {', '.join(Outcome.values)}")
    return Entry(action, resource_type, resource_id, Outcome(outcome), reason=reason, delta=change_delta)


class AuditService:
    def __init__(self, audit_logger: AuditLogger | None = None) -> None:
        self.audit_logger = audit_logger

    async def log_action(
        self, *, actor: str | User | None, action: str, resource_type: str, resource_id: str, tenant_id: str | int,
        actor_ip: str | None = None, reason: str = "", change_delta: dict[str, Any] | None = None,
        outcome: str = Outcome.SUCCESS, user_agent: str = "",
    ) -> AuditRecord:  # fmt: skip
        """Write one entry (an action done outside the console's own services); it is
        chained by the sealer like every other."""

        def write() -> AuditRecord:
            tenant_pk = _tenant(tenant_id)
            entry = _entry(action, resource_type, str(resource_id), reason, change_delta or {}, str(outcome))
            if actor_ip is not None:
                try:
                    ipaddress.ip_address(str(actor_ip))
                except ValueError:
                    raise _bad("actor_ip", "is an IPv4 or IPv6 address") from None
            if text_problem(user_agent) or len(user_agent) > 300:
                raise _bad("user_agent", "is at most 300 characters, without control characters")
            who = actor_named(actor, ip=actor_ip, user_agent=user_agent)
            with transaction.atomic():
                pk = audit_record(tenant_id=tenant_pk, actor=who, entry=entry)
            return AuditRecord.of(AuditEntry.objects.get(pk=pk))

        record = await sync_to_async(write)()
        if self.audit_logger is not None:
            self.audit_logger.log(record)
        return record

    async def query_audit_trail(self, query: AuditQuery) -> AuditResponse:
        """The entries ``query`` names, newest first; ``total`` is exact up to 10,000 and an
        estimate past it (``total_is_estimate``). Refusals: E10501-E10506."""

        def read() -> AuditResponse:
            tenant_pk = None if query.tenant_id is None else _tenant(query.tenant_id)
            params = {k: v for k, v in asdict(query).items() if k != "tenant_id" and v not in (None, "")}
            params["limit"], params["offset"] = str(query.limit), str(query.offset)
            scope = tenant_pk or 0  # a cursor is bound to its tenant, or to "every tenant"
            found, window = selectors.read_query(params, tenant_id=scope)
            rows = selectors.entries(tenant_pk, found)
            page, after = keyset_page(rows, window, kind=selectors.KIND, tenant_id=scope, time_field="occurred_at")
            past = offset_past_end(window, page, selectors.CODES.past_end)
            if past is not None:
                raise past
            total = bounded_total(rows)
            return AuditResponse([AuditRecord.of(e) for e in page], total.value, not total.exact, after)

        return await sync_to_async(read)()
