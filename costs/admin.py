from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from costs.models import UsageRecord
from tenancy.admin import TenantScopedAdmin


@admin.register(UsageRecord)
class UsageRecordAdmin(TenantScopedAdmin):
    list_display = ["occurred_at", "model", "agent", "tenant", "input_tokens", "output_tokens", "api_calls", "flagged"]
    list_filter = ["flagged", "model", "tenant"]
    search_fields = ["model", "agent__name", "agent__external_id"]
    list_select_related = ["agent", "tenant"]
    date_hierarchy = "occurred_at"
    raw_id_fields = ["agent"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
