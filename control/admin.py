"""Bulk batches in Django admin: read only. A batch changes agents through the control
service (audited, pushed to the agents), so admin shows it and its items, and the undo is
on the console's batch page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from control.models import Batch, BatchItem
from tenancy.admin import TenantScopedAdmin


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    fields = readonly_fields = ("agent", "outcome", "error_code", "message", "version")
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Batch)
class BatchAdmin(TenantScopedAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
