"""Memberships in Django admin go through the members service, as the members page does:
every change is audited (actor, address, outcome) and a tenant keeps its last admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from audit.services import request_actor
from core.errors import InterfaceError
from members import services
from tenancy.admin import TenantScopedAdmin
from tenancy.models import Membership, Role

REFUSED = "_l10_refused"  # set on the request when the service refused a deletion


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["tenant", "user", "role"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        current = self.instance
        user = data.get("user")
        if not current.pk and user is not None and not user.is_active:
            self.add_error("user", "This account is deactivated; only active accounts become members.")
        if current.pk and current.role == Role.ADMIN and data.get("role") != Role.ADMIN:
            # The service checks again under a row lock; this keeps the form and says why.
            others = Membership.objects.filter(tenant_id=current.tenant_id, role=Role.ADMIN).exclude(pk=current.pk)
            if not others.exists():
                self.add_error("role", "The last admin of a tenant stays an admin; make another member an admin first.")
        return data


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    form = MembershipForm
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__name", "tenant__slug"]
    raw_id_fields = ["user"]
    list_select_related = ["user", "tenant"]
    readonly_fields = ["created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A membership's person and tenant are what it is: only its role changes.
        return [*self.readonly_fields, "tenant", "user"] if obj is not None else list(self.readonly_fields)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each through the last-admin guard
        return actions

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        actor = request_actor(request)
        try:
            if change:
                saved = services.member_role_set(tenant=obj.tenant, user_id=obj.user_id, role=obj.role, actor=actor)
            else:
                saved = services.member_add(
                    tenant=obj.tenant, username=obj.user.get_username(), role=obj.role, actor=actor
                )
        except InterfaceError as exc:  # a race the form's check could not see; audited as refused
            messages.error(request, f"{exc.message} ({exc.code})")
            return
        obj.pk, obj.created_at = saved.pk, saved.created_at

    def response_add(self, request: HttpRequest, obj: Membership, post_url_continue: str | None = None) -> HttpResponse:
        if obj.pk is None:  # refused by the service (the message says why): nothing to show
            return HttpResponseRedirect(reverse("admin:tenancy_membership_changelist"))
        return super().response_add(request, obj, post_url_continue)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        try:
            services.member_remove(tenant=obj.tenant, user_id=obj.user_id, actor=request_actor(request))
        except InterfaceError as exc:
            setattr(request, REFUSED, f"{exc.message} ({exc.code})")

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        refused = getattr(request, REFUSED, None)
        if refused is None:
            return super().response_delete(request, obj_display, obj_id)
        messages.error(request, refused)
        return HttpResponseRedirect(reverse("admin:tenancy_membership_change", args=[obj_id]))
