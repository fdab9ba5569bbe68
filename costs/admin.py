from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core import runner
from costs import pricing, services
from costs.models import ModelPrice, UsageRecord
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


@admin.register(ModelPrice)
class ModelPriceAdmin(TenantScopedAdmin):
    """Prices, for platform staff: the platform's list (superusers) and their tenants'.
    Each change is audited (l10console/admin_site.py) and reaches every process's prices
    (``costs.pricing.changed``)."""

    list_display = ["model", "provider", "tenant", "input_per_mtok", "output_per_mtok", "effective_from", "source"]
    list_filter = ["tenant", "provider"]
    search_fields = ["model", "provider"]
    date_hierarchy = "effective_from"
    readonly_fields = ["created_at"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        pricing.changed()
        if change and set(form.changed_data) & set(services.PRICE_FIELDS):  # a correction: its records again
            runner.enqueue("costs.tasks.reprice", obj.pk)
        elif not change:  # a new price: the usage that had none
            runner.enqueue("costs.tasks.price_unpriced", obj.tenant_id)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # usage records keep the price they were made with
