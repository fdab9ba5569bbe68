"""The console's Django admin site: Django's, with every model admin registered on it
made to write the audit trail too (``audit.admin_audit.AuditedAdmin``). Django's admin
is installed as ``l10console.admin_apps.ConsoleAdminConfig``, whose default site this is,
so the apps' own ``@admin.register`` lands here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from audit.admin_audit import AuditedAdmin


class ConsoleAdminSite(admin.AdminSite):
    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        chosen = admin_class or admin.ModelAdmin
        if not issubclass(chosen, AuditedAdmin):
            chosen = type(chosen.__name__, (AuditedAdmin, chosen), {"__module__": chosen.__module__})
        super().register(model_or_iterable, chosen, **options)
