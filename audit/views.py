"""A tenant's audit trail for its admins (docs/audit.md, "The trail page"): filtered,
newest first, a page at a time by cursor; one entry with its change and its place in the
chain; and the filtered trail exported as CSV or JSON Lines (itself an audited action)."""

from __future__ import annotations

from uuid import UUID

from django.db import transaction
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit import export, selectors
from audit.models import AuditEntry, AuditPending, AuditSeal, Outcome
from audit.services import Entry, audit_record, request_actor
from core.errors import ErrorCode, InterfaceError
from core.http import ConsoleRequest
from core.listing import bounded_total, keyset_page, offset_past_end
from tenancy.decorators import tenant_view
from tenancy.models import Membership, Role

PAGE = 50


def _params(request: ConsoleRequest) -> dict[str, str]:
    return {key: str(value) for key, value in request.GET.items() if str(value).strip()}


@require_GET
@tenant_view(need=Role.ADMIN)
def trail(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    tenant = membership.tenant
    params = _params(request)
    error: InterfaceError | None = None
    page: list[AuditEntry] = []
    after = total = None
    try:
        query, window = selectors.read_query(params, tenant_id=tenant.pk, default_limit=PAGE, max_limit=200)
        rows = selectors.entries(tenant.pk, query)
        page, after = keyset_page(rows, window, kind=selectors.KIND, tenant_id=tenant.pk, time_field="occurred_at")
        error = offset_past_end(window, page, selectors.CODES.past_end)
        total = bounded_total(rows)
    except InterfaceError as exc:
        error, query = exc, selectors.AuditFilter()
    context = {
        "entries": page,
        "sealed": selectors.sealed_ids([e.pk for e in page]),
        "next_cursor": after,
        "total": total,
        "query": query,
        "params": params,
        "paged": "cursor" in params,
        "outcomes": Outcome.choices,
        "error": error,
        "error_field": (error.details or {}).get("field") if error else None,
        "formats": export.FORMATS,
    }
    return render(request, "audit/trail.html", context, status=400 if error else 200)


@require_GET
@tenant_view(need=Role.ADMIN)
def entry(request: ConsoleRequest, membership: Membership, entry_id: int) -> HttpResponse:
    found = get_object_or_404(AuditEntry, pk=entry_id, tenant=membership.tenant)
    seal = AuditSeal.objects.filter(entry=found).first()
    context = {
        "entry": found,
        "seal": seal,
        "pending": seal is None and AuditPending.objects.filter(entry=found).exists(),
        "changes": _changes(found.delta),
        "agent_uuid": _uuid(found.resource_id) if found.resource_type == "agent" else None,
        "same_batch": AuditEntry.objects.filter(tenant=membership.tenant, batch_id=found.batch_id).count()
        if found.batch_id
        else 0,
    }
    return render(request, "audit/entry.html", context)


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _changes(delta: dict[str, object]) -> list[tuple[str, object, object, object]]:
    """(field, before, after, other) rows of a delta: ``{"f": {"from": a, "to": b}}`` reads
    as a change; anything else is shown as it is."""
    rows: list[tuple[str, object, object, object]] = []
    for name, value in sorted(delta.items()):
        if isinstance(value, dict) and set(value) <= {"from", "to"} and value:
            rows.append((name, value.get("from"), value.get("to"), None))
        else:
            rows.append((name, None, None, value))
    return rows


@require_GET
@tenant_view(need=Role.ADMIN)
def download(request: ConsoleRequest, membership: Membership) -> HttpResponseBase:
    """The filtered trail (no page: all of it), oldest first, streamed."""
    tenant = membership.tenant
    params = _params(request)
    kind = params.pop("format", "csv")
    if kind not in export.FORMATS:
        error = InterfaceError(ErrorCode.AUDIT_INVALID_QUERY, "“format” is csv or jsonl.", details={"field": "format"})
        return render(request, "400.html", {"error": error}, status=400)
    try:
        query, _ = selectors.read_query(params, tenant_id=tenant.pk)
    except InterfaceError as exc:
        return render(request, "400.html", {"error": exc}, status=400)
    with transaction.atomic():  # who took the trail away, and which part of it
        audit_record(
            tenant_id=tenant.pk,
            actor=request_actor(request),
            entry=Entry(
                action="audit.export", resource_type="audit", resource_id=tenant.slug[:64], outcome=Outcome.SUCCESS,
                delta={"format": kind, "filters": params},
            ),
        )  # fmt: skip
    rows = export.rows(tenant.pk, query)
    body = export.jsonl(rows) if kind == "jsonl" else export.csv_lines(rows)
    response = StreamingHttpResponse(body, content_type=export.FORMATS[kind])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{tenant.slug}-{stamp}.{kind}"'
    response["Cache-Control"] = "no-store"
    return response
