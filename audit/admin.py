"""The audit trail in Django admin: read only (rows are append-only, docs/architecture.md),
filtered and searched by what auditors ask: who, what, which resource, how it ended."""

from __future__ import annotations

from django.contrib import admin

from audit.models import AuditEntry
from tenancy.admin import ReadOnlyTenantAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyTenantAdmin):
    list_display = ["occurred_at", "actor_label", "action", "resource", "outcome", "error_code", "tenant", "ip"]
    list_filter = ["outcome", "resource_type", "action", "tenant"]
    search_fields = ["actor_label", "action", "resource_id", "request_id", "idempotency_key", "=batch_id", "reason"]
    list_select_related = ["tenant"]
    date_hierarchy = "occurred_at"
    fields = readonly_fields = (
        "occurred_at", "tenant", "actor", "actor_label", "ip", "user_agent", "action", "resource_type", "resource_id",
        "outcome", "error_code", "reason", "delta", "idempotency_key", "request_id", "batch_id",
    )  # fmt: skip

    @admin.display(description="Resource", ordering="resource_type")
    def resource(self, obj: AuditEntry) -> str:
        return f"{obj.resource_type}:{obj.resource_id}"
