"""Alert rules in Django admin, checked as the console checks them (``alerts.rules``) and
written through the alerts service (audited); alerts and their timelines, read only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from alerts import services
from alerts.models import Alert, AlertRule, AlertTransition, NotificationTarget
from alerts.rules import FIELDS, rule_spec
from audit.services import request_actor
from core.errors import InterfaceError
from tenancy.admin import ReadOnlyInline, ReadOnlyTenantAdmin, TenantScopedAdmin

FORM_FIELDS = [f for f in FIELDS if f not in ("scope",)]


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = ["tenant", *FORM_FIELDS]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        raw = {name: data.get(name) for name in FORM_FIELDS}
        raw["agent"] = data["agent"].pk if data.get("agent") else None
        raw["targets"] = [t.pk for t in data.get("targets") or []]
        try:
            self.spec = rule_spec({k: v for k, v in raw.items() if v is not None})
        except InterfaceError as exc:
            field = getattr(exc, "field", None)
            self.add_error(field if field in self.fields else None, f"{exc.message} ({exc.code})")
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(TenantScopedAdmin):
    form = AlertRuleForm
    list_display = [
        "name",
        "tenant",
        "metric",
        "aggregation",
        "comparator",
        "threshold",
        "for_seconds",
        "severity",
        "enabled",
    ]
    list_filter = ["enabled", "severity", "metric", "tenant"]
    search_fields = ["name", "selector"]
    list_select_related = ["tenant"]
    raw_id_fields = ["agent"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["tenant"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: AlertRule, form: Any, change: bool) -> None:
        actor = request_actor(request)
        try:
            if change:
                saved = services.rule_update(tenant=obj.tenant, rule_id=obj.pk, spec=form.spec, actor=actor)
            else:
                saved = services.rule_create(tenant=obj.tenant, spec=form.spec, actor=actor)
        except InterfaceError as exc:
            messages.error(request, f"{exc.message} ({exc.code})")
            return
        obj.pk = saved.pk


@admin.register(NotificationTarget)
class NotificationTargetAdmin(TenantScopedAdmin):
    """Targets are added on the console's targets page (checked, audited, a secret made);
    here they are read, and turned off or on."""

    list_display = ["name", "tenant", "kind", "url", "emails", "enabled"]
    list_filter = ["kind", "enabled", "tenant"]
    search_fields = ["name", "url", "emails"]
    fields = ["tenant", "name", "kind", "url", "emails", "enabled", "created_at"]
    readonly_fields = ["tenant", "name", "kind", "url", "emails", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class AlertTransitionInline(ReadOnlyInline):
    model = AlertTransition
    fields = readonly_fields = ("at", "from_state", "to_state", "value", "note")


@admin.register(Alert)
class AlertAdmin(ReadOnlyTenantAdmin):
    list_display = ["started_at", "severity", "state", "message", "agent", "tenant", "acknowledged_by", "snoozed_until"]
    list_filter = ["state", "severity", "tenant", "rule"]
    search_fields = ["message", "agent__name", "agent__external_id", "fingerprint"]
    list_select_related = ["tenant", "agent", "acknowledged_by"]
    date_hierarchy = "started_at"
    inlines = [AlertTransitionInline]
