"""Django admin for platform staff: superusers see everything; other staff only the
tenants where they are admin, and those tenants' objects."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest

from tenancy import services
from tenancy.models import ApiToken, Membership, Role, Tenant
from tenancy.usernames import clean_unique_username


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


class ReadOnlyTenantAdmin(TenantScopedAdmin):
    """A tenant's records that change only through the console's services (audited), or
    never: shown, filtered and searched here, not added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, to read."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipInline(ReadOnlyInline):
    """The tenant's members, to read: changes go through the membership admin (members/admin.py),
    which audits them and keeps the last admin."""

    model = Membership
    fields = readonly_fields = ("user", "role", "created_at")
    show_change_link = True


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


@admin.register(ApiToken)
class ApiTokenAdmin(TenantScopedAdmin):
    list_display = [
        "name",
        "prefix",
        "tenant",
        "scopes",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant__name"]
    list_select_related = ["tenant", "created_by"]
    fields = [
        "tenant",
        "name",
        "prefix",
        "scopes",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    # A token made here gets the default scopes and no expiry; the tenant's token page offers both.
    readonly_fields = ["prefix", "scopes", "created_by", "created_at", "expires_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, plain = services.token_create(tenant=obj.tenant, name=obj.name, created_by=request.user)  # type: ignore[arg-type]  # staff only reach admin logged in
        obj.pk = token.pk
        obj.refresh_from_db()
        messages.warning(request, f"Token “{token.name}” created. Copy it now, it is shown only once: {plain}")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*self.readonly_fields, "tenant"] if obj is not None else list(self.readonly_fields)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(services.token_revoke(token=t, by=request.user) for t in queryset)  # type: ignore[arg-type]
        self.message_user(request, f"Revoked {revoked} token(s).")


# --- people: one user per username under normalisation (tenancy/usernames.py) ------------


class NormalizedUserCreationForm(AdminUserCreationForm):
    def clean_username(self) -> str:
        return clean_unique_username(self)


class NormalizedUserChangeForm(UserChangeForm):
    def clean_username(self) -> str:
        return clean_unique_username(self)


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class NormalizedUserAdmin(UserAdmin):
    """Django's user admin, refusing a username another user has under normalisation
    (``Alice``, ``ＡＬＩＣＥ`` and ``alice`` are one name) with a message that says so."""

    add_form = NormalizedUserCreationForm
    form = NormalizedUserChangeForm
