"""Every change made in Django admin is an audit entry too (docs/audit.md, "What is
recorded"): ``AuditedAdmin`` records what admin's own log records (an addition, a change
with its message, each deletion), with the staff member, their address and client, in the
trail of the object's tenant, or the platform's for an object of no tenant. The console's
admin site (``l10console.admin_site``) mixes it into every model admin registered there,
so no admin page can be added without it."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.admin.models import LogEntry
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from audit.models import Outcome
from audit.services import Entry, audit_record, request_actor
from core.inputs import printable
from tenancy.models import Tenant


def tenant_of(obj: Model) -> int | None:
    if isinstance(obj, Tenant):
        return int(obj.pk)
    tenant_id = getattr(obj, "tenant_id", None)
    return tenant_id if isinstance(tenant_id, int) else None


def _message(message: Any) -> str:
    """Admin's change message (a list of what changed, or text) as admin shows it."""
    text = json.dumps(message) if isinstance(message, list) else str(message or "")
    return str(LogEntry(change_message=text).get_change_message())


class AuditedAdmin:
    """Mixed in before ``ModelAdmin``: its ``log_*`` hooks also write the audit trail, in the
    same transaction as the change (admin's views are atomic)."""

    def _audit(self, request: HttpRequest, obj: Model, action: str, message: str) -> None:
        entry = Entry(
            action=action, resource_type=f"{obj._meta.app_label}.{obj._meta.model_name}"[:32],
            resource_id=str(obj.pk)[:64], outcome=Outcome.SUCCESS, reason=printable(message)[:500],
            delta={"object": printable(str(obj))[:200]},
        )  # fmt: skip
        audit_record(tenant_id=tenant_of(obj), actor=request_actor(request), entry=entry)

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "admin.add", _message(message) or "Added.")
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "admin.change", _message(message) or "No fields changed.")
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            self._audit(request, obj, "admin.delete", "Deleted.")
        return super().log_deletions(request, queryset)  # type: ignore[misc]
