"""Reading the audit trail: one tenant's entries by who, what, which resource, how it
ended and when, newest first, a page at a time (core/listing.py); the same query for the
page, the export and the Python API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from audit.models import AuditEntry, AuditPending, Outcome
from core.errors import ErrorCode
from core.listing import Codes, Window, check_filters, read_window, refuse

CODES = Codes(
    invalid=ErrorCode.AUDIT_INVALID_QUERY,
    bad_time=ErrorCode.AUDIT_BAD_TIME,
    bad_range=ErrorCode.AUDIT_BAD_RANGE,
    too_many=ErrorCode.AUDIT_LIMIT_TOO_LARGE,
    past_end=ErrorCode.AUDIT_OFFSET_PAST_END,
    bad_cursor=ErrorCode.AUDIT_BAD_CURSOR,
)
KIND = "audit"
TEXT_FILTERS = {"actor": 150, "action": 64, "resource_type": 32, "resource_id": 650}
MAX_RESOURCES = 10
KEYS = frozenset({*TEXT_FILTERS, "outcome", "start_time", "end_time", "limit", "offset", "cursor"})


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""  # the actor's name as recorded, any case
    action: str = ""  # exact, or a prefix ending in "*": "agent.*"
    resource_type: str = ""
    resource_id: str = ""  # one id, or several separated by commas (an agent's id and its external id)
    outcome: str = ""
    start: datetime | None = None
    end: datetime | None = None

    @property
    def active(self) -> bool:
        return any((self.actor, self.action, self.resource_type, self.resource_id, self.outcome, self.start, self.end))


def read_query(
    params: Mapping[str, Any], *, tenant_id: int, extra: frozenset[str] = frozenset(), max_limit: int = 1000,
    default_limit: int = 50,
) -> tuple[AuditFilter, Window]:  # fmt: skip
    """The filter and window of ``params``, each value checked once: an unknown key (but
    ``extra``), a text with control characters or too long, an outcome that is not one,
    and every window problem (``core.listing.read_window``) are refused with their code."""
    check_filters(params, keys=KEYS | extra, texts=TEXT_FILTERS, code=CODES.invalid, what="the audit trail")
    texts = {name: str(params.get(name) or "").strip() for name in TEXT_FILTERS}
    ids = resource_ids(texts["resource_id"])
    if len(ids) > MAX_RESOURCES or any(len(i) > 64 for i in ids):
        raise refuse(CODES.invalid, "resource_id", f"“resource_id” names at most {MAX_RESOURCES} ids of 64 characters.")
    outcome = str(params.get("outcome") or "").strip()
    if outcome and outcome not in Outcome.values:
        raise refuse(CODES.invalid, "outcome", f"“outcome” is one of {', '.join(Outcome.values)}.")
    window = read_window(
        params, CODES, kind=KIND, tenant_id=tenant_id, max_limit=max_limit, default_limit=default_limit
    )
    return AuditFilter(**texts, outcome=outcome, start=window.start, end=window.end), window


def resource_ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def entries(tenant_id: int | None, query: AuditFilter) -> QuerySet[AuditEntry]:
    """The entries ``query`` asks for (one tenant's, or every tenant's for None), unordered."""
    found = AuditEntry.objects.all() if tenant_id is None else AuditEntry.objects.filter(tenant_id=tenant_id)
    if query.actor:
        found = found.filter(actor_label__iexact=query.actor)
    if query.action.endswith("*"):
        found = found.filter(action__startswith=query.action[:-1])
    elif query.action:
        found = found.filter(action=query.action)
    if query.resource_type:
        found = found.filter(resource_type=query.resource_type)
    if query.resource_id:
        found = found.filter(resource_id__in=resource_ids(query.resource_id))
    if query.outcome:
        found = found.filter(outcome=query.outcome)
    if query.start is not None:
        found = found.filter(occurred_at__gte=query.start)
    if query.end is not None:
        found = found.filter(occurred_at__lte=query.end)
    return found


def sealed_ids(ids: list[int]) -> set[int]:
    """Those of these entries that are sealed (not waiting for the sealer)."""
    waiting = set(AuditPending.objects.filter(entry_id__in=ids).values_list("entry_id", flat=True))
    return set(ids) - waiting
