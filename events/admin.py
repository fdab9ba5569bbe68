from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from events.models import Event
from tenancy.admin import TenantScopedAdmin


@admin.register(Event)
class EventAdmin(TenantScopedAdmin):
    list_display = ["occurred_at", "type", "severity", "agent", "tenant", "message"]
    list_filter = ["severity", "tenant", "type"]
    search_fields = ["type", "message", "agent__name", "agent__external_id"]
    list_select_related = ["agent", "tenant"]
    date_hierarchy = "occurred_at"
    raw_id_fields = ["agent"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
