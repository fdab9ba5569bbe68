from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from fleet.models import Agent, MetricMinute
from tenancy.admin import TenantScopedAdmin


@admin.register(Agent)
class AgentAdmin(TenantScopedAdmin):
    list_display = ["name", "external_id", "tenant", "desired_state", "observed_state", "last_heartbeat_at", "version"]
    list_filter = ["observed_state", "desired_state", "tenant", "registered_at"]
    search_fields = ["name", "external_id", "id"]
    list_select_related = ["tenant"]
    readonly_fields = [
        "id", "version", "observed_state", "observed_changed_at", "last_heartbeat_at", "desired_changed_at",
        "desired_changed_by", "cpu_percent", "memory_mb", "latency_p95_ms", "tokens_per_min", "requests_per_min",
        "errors_per_min", "metrics_at", "registered_at", "updated_at",
        # Internal to control: delivery to the agent, the pause's details, the unconfirmed
        # stop and the quotas change only through the control service (audited, pushed).
        "delivered_version", "delivered_at", "pause_reason", "pause_until", "pause_mode", "stop_unconfirmed_at",
        "quotas",
    ]  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(self.readonly_fields)
        if obj is not None:
            # Desired state changes go through the control service (audited, pushed to the agent).
            fields += ["tenant", "external_id", "desired_state"]
        return fields


@admin.register(MetricMinute)
class MetricMinuteAdmin(TenantScopedAdmin):
    list_display = ["agent", "minute", "samples", "cpu_max", "memory_max", "tokens", "requests", "errors"]
    list_filter = ["tenant"]
    search_fields = ["agent__name", "agent__external_id"]
    list_select_related = ["agent"]
    date_hierarchy = "minute"
    raw_id_fields = ["agent"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
