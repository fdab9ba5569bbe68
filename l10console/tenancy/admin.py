"""Django admin for platform staff: superusers see everything; other staff only the
tenants where they are admin, and those tenants' objects."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest

from l10console.tenancy.models import Membership, Role, Tenant


def admin_tenant_ids(request: HttpRequest) -> QuerySet[Any]:
    return Membership.objects.filter(user__pk=request.user.pk or 0, role=Role.ADMIN).values("tenant_id")


class TenantScopedAdmin(admin.ModelAdmin):
    """Scope a tenant-owned model to the staff user's admin tenants. ``tenant_path`` is
    the lookup from the model to its tenant id."""

    tenant_path = "tenant_id"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.tenant_path}__in": admin_tenant_ids(request)})

    def formfield_for_foreignkey(self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any) -> ModelChoiceField:
        if db_field.related_model is Tenant and not request.user.is_superuser:
            kwargs["queryset"] = Tenant.objects.filter(pk__in=admin_tenant_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[return-value]

    def _may(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and (user.is_superuser or admin_tenant_ids(request).exists()))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_path = "pk"
    list_display = ["name", "slug", "member_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    readonly_fields = ["created_at"]

    @admin.display(description="Members")
    def member_count(self, obj: Tenant) -> int:
        return obj.memberships.count()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__name", "tenant__slug"]
    raw_id_fields = ["user"]
    list_select_related = ["user", "tenant"]
