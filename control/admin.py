"""Bulk batches in Django admin: read only. A batch changes agents through the control
service (audited, pushed to the agents), so admin shows it and its items, and the undo is
on the console's batch page."""

from __future__ import annotations

from django.contrib import admin

from control.models import Batch, BatchItem
from tenancy.admin import ReadOnlyInline, ReadOnlyTenantAdmin


class BatchItemInline(ReadOnlyInline):
    model = BatchItem
    fields = readonly_fields = ("agent", "outcome", "error_code", "message", "version")
    show_change_link = False


@admin.register(Batch)
class BatchAdmin(ReadOnlyTenantAdmin):
    list_display = ["created_at", "action", "tenant", "created_by", "finished_at", "undo_of"]
    list_filter = ["action", "tenant", ("finished_at", admin.EmptyFieldListFilter)]
    search_fields = ["=id", "reason", "created_by__username"]
    list_select_related = ["tenant", "created_by"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "id",
        "tenant",
        "action",
        "reason",
        "created_by",
        "created_at",
        "finished_at",
        "undo_of",
    )
    inlines = [BatchItemInline]
